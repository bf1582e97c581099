"""`distill reproduce`: the demo grid with every method, skipping done cells, failed cells."""
import csv
import json
import os
import time

import pytest

from conftest import ok, run_cli

from distill import config
from distill.errors import PartialFailure
from pipelines import paper, tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = os.path.join(ROOT, "configs", "paper", "demo.yaml")
SMALL = ["grid.overrides=['data.max_train_examples=300', 'data.max_transfer_examples=300', "
         "'data.max_eval_examples=100', 'teacher.train.epochs=2', 'student.distill.epochs=1', "
         "'student.finetune.epochs=1', "
         "'teacher.min_margin=-1.0']"]  # 20 teacher steps need not learn; see tests/test_gate.py


def cell(out, method, seed="seed0", student="L-1_H-32"):
    return os.path.join(out, "cells", "sst2", student, method, seed)


@pytest.mark.large
def test_demo_grid_all_methods_resumes_and_records_failures(tmp_path):
    students = ("grid.students=[{'name': 'L-1_H-32', 'encoder': '{assets}/student_small', "
                "'truncated_encoder': '{assets}/teacher_L1'}, "
                "{'name': 'broken', 'encoder': '{assets}/no_such_encoder'}]")
    cfg = config.load(GRID, SMALL + [students, "grid.transfer_sizes=[100]"])
    out = str(tmp_path / "grid")
    with pytest.raises(PartialFailure, match=r"^7 of 16 grid cells failed") as failure:
        paper.run(cfg, out)
    assert all("no_such_encoder" in line for line in str(failure.value).splitlines()[1:])
    assert len(str(failure.value).splitlines()) == 8  # One line per failed cell.
    summary = json.load(open(os.path.join(out, "grid.json")))
    # L-1: 5 methods on the whole store + 4 that distil on 100 of its examples (not PF);
    # "broken": 4 methods (no truncated teacher for TT) + 3, all failed.
    assert summary["cells"] == 16 and summary["done"] == 9
    assert all("no_such_encoder" in error for error in summary["failed"].values())

    with open(os.path.join(out, "methods_sst2.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["student", "PF", "D", "PD", "PDF", "TT"]
    # Each entry is its cell's dev accuracy (x100), which is the cell run's own metrics.json.
    for method, value in zip(rows[0][1:], rows[1][1:]):
        with open(os.path.join(cell(out, method), "cell.json")) as f:
            score = json.load(f)["scores"]["validation"]
        with open(os.path.join(cell(out, method), "metrics.json")) as f:
            assert json.load(f)["student"]["validation"]["accuracy"] == score
        assert value == f"{100 * score:.1f}", method
    assert rows[2][1:] == ["-"] * 5  # the broken student has no score
    # TT: the truncated teacher as the initialisation, then distillation (no fine-tuning).
    with open(os.path.join(cell(out, "TT"), "student", "distill", "done.json")) as f:
        assert json.load(f)["summary"]["encoder"].endswith("teacher_L1")
    assert not os.path.exists(os.path.join(cell(out, "TT"), "student", "finetune"))
    # PDF did not distil again: its distillation stage is PD's.
    for seed in ("seed0", "seed0-n100"):
        link = os.path.join(cell(out, "PDF", seed), "student", "distill")
        assert os.path.islink(link)
        assert os.path.realpath(link) == os.path.realpath(
            os.path.join(cell(out, "PD", seed), "student", "distill"))
    # Each stage's curve starts before its first step (epoch 0), and PDF's fine-tuning starts
    # from exactly where PD's distillation ended: the same dev score.
    with open(os.path.join(cell(out, "PDF"), "cell.json")) as f:
        pdf = json.load(f)
    curves = pdf["epochs"]
    assert [r["epoch"] for r in curves["distill"]][0] == 0
    assert [r["epoch"] for r in curves["finetune"]][0] == 0
    assert curves["finetune"][0]["score"] == curves["distill"][-1]["score"]
    # Two classes: the larger share of predictions.
    assert 0.5 <= pdf["top_class_share"]["validation"] <= 1.0
    # The teacher was evaluated once for the task, not in every cell.
    assert os.path.isfile(os.path.join(out, "shared", "sst2", "predictions", "teacher-validation.npz"))
    assert not os.path.exists(os.path.join(cell(out, "PD"), "predictions", "teacher-validation.npz"))

    glue = open(os.path.join(out, "glue_PD.md")).read()
    assert "| model | Score | CoLA | SST-2 |" in glue and "our rows are dev-set scores" in glue
    assert "| L-1_H-32 (ours, dev) | - |" in glue  # SST-2 alone: no GLUE score.
    # The floor and the teacher beside the students: SST-2's dev majority class and the
    # teacher's dev accuracy that every cell's metrics.json recorded.
    with open(os.path.join(cell(out, "PD"), "metrics.json")) as f:
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

    # The transfer-size axis: 100 distilled examples against the whole store (600: 300
    # labeled + 300 unlabeled), the 100-example cells distilled on exactly 100.
    with open(os.path.join(out, "transfer_size_sst2.csv")) as f:
        sizes = list(csv.reader(f))
    assert sizes[0] == ["student", "method", "100", "all (600)"]
    for row in sizes[1:6]:
        method = row[1]
        seed = "seed0" if method == "PF" else "seed0-n100"
        with open(os.path.join(cell(out, method, seed), "cell.json")) as f:
            assert row[2] == f"{100 * json.load(f)['scores']['validation']:.1f}", method
        if method != "PF":
            with open(os.path.join(cell(out, method, seed), "student", "distill",
                                   "done.json")) as f:
                assert json.load(f)["summary"]["transfer_examples"] == 100
    assert sizes[1][2] == sizes[1][3]  # PF reads no store: one score.
    assert os.path.getsize(os.path.join(out, "sst2_vs_transfer_size.png")) > 1000

    pdf = os.path.join(cell(out, "PDF"), "cell.json")
    stamp = os.path.getmtime(pdf)
    with pytest.raises(PartialFailure):  # The broken cells are tried again, and fail again.
        paper.run(cfg, out)
    assert json.load(open(os.path.join(out, "grid.json")))["done"] == 9
    assert os.path.getmtime(pdf) == stamp
    assert json.load(open(pdf))["status"] == "done"


@pytest.mark.large
def test_a_per_cell_search_resumes_after_a_kill_and_skips_finished_trials(tmp_path):
    out = tmp_path / "grid"
    args = ["reproduce", GRID, "--output", str(out), "--set", "grid.search=true",
            "--set", "grid.methods=['PDF']",
            "--set", "grid.students=[{'name': 'L-1_H-32', 'encoder': '{assets}/student_small'}]",
            "--set", SMALL[0][:-1] + ", \"sweep.space={'student.*.learning_rate': "
                                     "[0.001, 0.0003, 0.0001]}\", 'sweep.oracle=grid']"]
    trials_dir = out / "cells" / "sst2" / "L-1_H-32" / "PDF" / "seed0" / "trials"
    log = tmp_path / "first.log"
    with open(log, "w") as output:
        process = run_cli(*args, wait=False, output=output)
        deadline = time.time() + 600
        while not list(trials_dir.glob("*/trial.json")) and process.poll() is None:
            assert time.time() < deadline
            time.sleep(0.2)
        process.kill()
        process.wait()
    finished = {p: os.path.getmtime(p) for p in trials_dir.glob("*/trial.json")}
    assert len(finished) in (1, 2), log.read_text()[-3000:]  # Killed amid the search.
    result = ok(run_cli(*args))
    assert all(os.path.getmtime(p) == t for p, t in finished.items())  # Not trained again.
    assert "[reproduce] 1 of 1 cells done" in result.stdout
    # The demo grid's transfer size (1,000) is not below this small store's 600 examples.
    assert "grid.transfer_sizes [1000] are not below the store's 600 examples" in result.stdout
    searched = json.loads((trials_dir.parent / "cell.json").read_text())
    assert searched["trials"] == 3 and searched["status"] == "done"
    # The selected trial is the best on the carved split, and its dev score is the cell's.
    trials = [json.loads(p.read_text()) for p in sorted(trials_dir.glob("*/trial.json"))]
    assert len(trials) == 3
    best = max(trials, key=lambda t: t["heldout"]["score"])
    assert searched["selected"]["trial_id"] == best["trial_id"]
    assert searched["selected"]["student.*.learning_rate"] == best["values"][
        "student.*.learning_rate"]
    best_dir = trials_dir / best["trial_id"]
    for stage in ("distill", "finetune"):  # The search set both stages PDF trains.
        done = json.loads((best_dir / "student" / stage / "inputs.json").read_text())
        assert done["student"][stage]["learning_rate"] == best["values"]["student.*.learning_rate"]
    # Then refit: the selected setting trained again on all of train (grid.refit, the default),
    # its distillation the selected trial's (the same store), its fine-tuning on train with no
    # split carved out of it (the trial's carved 10%).
    refit = trials_dir.parent / "refit"
    assert os.path.realpath(refit / "student" / "distill") == os.path.realpath(
        best_dir / "student" / "distill")
    finetuned = json.loads((refit / "student" / "finetune" / "done.json").read_text())
    trial_finetuned = json.loads((best_dir / "student" / "finetune" / "done.json").read_text())
    refit_data = json.loads((refit / "student" / "finetune" / "inputs.json").read_text())
    trial_data = json.loads((best_dir / "student" / "finetune" / "inputs.json").read_text())
    assert (refit_data["upstream"]["heldout_fraction"], trial_data["upstream"]["heldout_fraction"]) \
        == (0.0, 0.1)
    assert searched["model"].startswith("the selected setting refit on all of train")
    with open(refit / "config.yaml") as f:
        assert "heldout_fraction: 0.0" in f.read()
    assert searched["scores"] != searched["selected"]["trial_dev_scores"] or \
        finetuned["fingerprint"] != trial_finetuned["fingerprint"]


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
    rows = tables._published_rows(["L-2_H-128 (Tiny)", "L-3_H-96"])
    assert rows == [["BERT-Tiny (published, test)", "64.2", "0.0", "83.2", "76.1", "73.9", "72.8",
                     "70.2", "70.3", "81.5", "57.2", "62.3"]]
    cols = {(t, s): [0.5] for t, s, _ in tables.GLUE_COLUMNS}
    assert tables._glue_score(cols) == "50.0"
    del cols[("mnli", "validation_mismatched")]
    assert tables._glue_score(cols) == "-"  # MNLI incomplete: no GLUE score.


def test_the_readme_defines_every_method_as_the_grid_runs_it():
    readme = open(os.path.join(ROOT, "README.md")).read()
    for name, method in paper.METHODS.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| {name} | "))
        assert row.endswith(f"| {method.definition} |"), name


@pytest.mark.large
def test_a_grid_on_a_given_teacher_runs_its_cells_and_a_failed_cell_fails_the_command(
        tmp_path, capsys):
    """A teacher fine-tuned elsewhere (`teacher.finetuned`) is every cell's teacher; a cell
    that fails makes `distill reproduce` exit 1, naming it, with the other tables written."""
    from distill import models
    from pipelines import cli, demo

    out = tmp_path / "grid"
    assets = demo.ensure_assets(str(out / "assets"))
    given = models.export(models.build(assets["teacher"], 2, dropout=0.0),
                          str(tmp_path / "given_teacher"), {"task": "sst2"})
    students = ("grid.students=[{'name': 'L-2_H-64', 'encoder': '{assets}/student_encoder'}, "
                "{'name': 'broken', 'encoder': '{assets}/no_such_encoder'}]")
    overrides = SMALL[0][:-1] + f", 'teacher.finetuned={given}']"
    status = cli.main(["reproduce", GRID, "--output", str(out), "--set", overrides,
                       "--set", students, "--set", "grid.methods=['PD']",
                       "--set", "grid.transfer_sizes=[]"])
    err = capsys.readouterr().err
    assert status == 1, err[-2000:]
    assert "distill: 1 of 2 grid cells failed" in err and "sst2/broken/PD/0/None: " in err
    done = json.load(open(cell(str(out), "PD", student="L-2_H-64") + "/cell.json"))
    assert done["status"] == "done"
    teacher = json.load(open(cell(str(out), "PD", student="L-2_H-64") + "/teacher/done.json"))
    assert teacher["summary"]["supplied"] == given  # The given teacher, not one trained here.
    assert not os.path.exists(out / "shared" / "sst2" / "teacher" / "model")
    assert os.path.isfile(out / "methods_sst2.csv")
