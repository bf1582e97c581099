"""`distill reproduce`: the demo grid with every method, skipping done cells, failed cells."""
import csv
import json
import os

import pytest

from distill import config
from pipelines import paper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = os.path.join(ROOT, "configs", "paper", "demo.yaml")
SMALL = ["grid.overrides=['data.max_train_examples=300', 'data.max_transfer_examples=300', "
         "'data.max_eval_examples=100', 'teacher.train.epochs=2', 'student.distill.epochs=1', "
         "'student.finetune.epochs=1', "
         "'teacher.min_margin=-1.0']"]  # 20 teacher steps need not learn; see tests/test_gate.py


@pytest.mark.large
def test_demo_grid_all_methods_resumes_and_records_failures(tmp_path):
    students = ("grid.students=[{'name': 'L-1_H-32', 'encoder': '{assets}/student_small', "
                "'truncated_encoder': '{assets}/teacher_L1'}, "
                "{'name': 'broken', 'encoder': '{assets}/no_such_encoder'}]")
    cfg = config.load(GRID, SMALL + [students])
    out = str(tmp_path / "grid")
    summary = paper.run(cfg, out)
    # 5 methods for L-1 (TT included); 4 for "broken" (no truncated teacher), all failed.
    assert summary["cells"] == 9 and summary["done"] == 5
    assert all("no_such_encoder" in error for error in summary["failed"].values())

    with open(os.path.join(out, "methods_sst2.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["student", "PF", "D", "PD", "PDF", "TT"]
    # Each entry is its cell's dev accuracy (x100), which is the cell run's own metrics.json.
    for method, value in zip(rows[0][1:], rows[1][1:]):
        cell_dir = os.path.join(out, "cells", "sst2", "L-1_H-32", method, "seed0")
        with open(os.path.join(cell_dir, "cell.json")) as f:
            score = json.load(f)["scores"]["validation"]
        with open(os.path.join(cell_dir, "metrics.json")) as f:
            assert json.load(f)["student"]["validation"]["accuracy"] == score
        assert value == f"{100 * score:.1f}", method
    assert rows[2][1:] == ["-"] * 5  # the broken student has no score
    glue = open(os.path.join(out, "glue_PD.md")).read()
    assert "| model | Score | CoLA | SST-2 |" in glue and "our rows are dev-set scores" in glue
    assert "| L-1_H-32 (ours, dev) | - |" in glue  # SST-2 alone: no GLUE score.
    # The floor and the teacher beside the students: SST-2's dev majority class and the
    # teacher's dev accuracy that every cell's metrics.json recorded.
    with open(os.path.join(out, "cells", "sst2", "L-1_H-32", "PD", "seed0", "metrics.json")) as f:
        teacher = json.load(f)["teacher"]["validation"]["accuracy"]
    with open(os.path.join(out, "assets", "SST-2", "dev.tsv")) as f:
        dev = [int(line.rsplit("\t", 1)[1]) for line in f.read().splitlines()[1:101]]
    with open(os.path.join(out, "assets", "SST-2", "train.tsv")) as f:
        train = [int(line.rsplit("\t", 1)[1]) for line in f.read().splitlines()[1:301]]
    majority = max(set(train), key=train.count)
    floor = 100 * sum(y == majority for y in dev) / len(dev)
    methods = open(os.path.join(out, "methods_sst2.md")).read()
    assert (f"Always answering the majority class scores {floor:.1f}; the teacher "
            f"{100 * teacher:.1f}.") in methods
    assert f"| majority class (dev) | - | - | {floor:.1f} |" in glue
    assert os.path.getsize(os.path.join(out, "sst2_vs_size.png")) > 1000

    cell = os.path.join(out, "cells", "sst2", "L-1_H-32", "PDF", "seed0", "cell.json")
    stamp = os.path.getmtime(cell)
    again = paper.run(cfg, out)
    assert again["done"] == 5 and os.path.getmtime(cell) == stamp
    assert json.load(open(cell))["status"] == "done"


def test_unknown_method_and_bad_students():
    from distill.errors import UserError

    with pytest.raises(UserError, match=r"grid.methods: unknown \['KD'\]"):
        paper.run(config.load(GRID, ["grid.methods=['KD']"]), "/nonexistent")
    with pytest.raises(UserError, match="grid.students"):
        paper.students(config.load(None, ["grid.students=['x']"]).grid, None)


def test_small_bert_24_are_derived_from_layers_and_hidden():
    students = paper.students(config.load(None).grid, None)
    assert len(students) == 24
    assert students[0]["encoder"].endswith("small_bert/bert_en_uncased_L-2_H-128_A-2/2")
    assert students[-1]["encoder"].endswith("small_bert/bert_en_uncased_L-12_H-768_A-12/2")


def test_glue_tables_show_the_published_row_of_a_matching_size():
    rows = paper._published_rows(["L-2_H-128 (Tiny)", "L-3_H-96"])
    assert rows == [["BERT-Tiny (published, test)", "64.2", "0.0", "83.2", "76.1", "73.9", "72.8",
                     "70.2", "70.3", "81.5", "57.2", "62.3"]]
    cols = {(t, s): [0.5] for t, s, _ in paper.GLUE_COLUMNS}
    assert paper._glue_score(cols) == "50.0"
    del cols[("mnli", "validation_mismatched")]
    assert paper._glue_score(cols) == "-"  # MNLI incomplete: no GLUE score.
