"""The teacher's quality gate: labeling refuses a teacher that learned nothing."""
import json

import numpy as np
import tensorflow as tf

from distill import config, models, tasks
from pipelines import cli
from teachers import gate


def constant_teacher(small_task, path):
    """The task's classifier with its output layer zeroed: the same answer for every text,
    as a teacher trained for zero steps (or one that collapsed) gives."""
    model = models.build(small_task["teacher"], 2, dropout=0.0)
    model.get_layer("logits").kernel.assign(tf.zeros_like(model.get_layer("logits").kernel))
    return models.export(model, str(path), {"task": "sst2"})


def test_a_teacher_that_learned_nothing_is_refused_before_labeling(small_task, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["configs/demo.yaml", "--output", str(run), *small_task["sets"],
            "--set", f"teacher.finetuned={constant_teacher(small_task, tmp_path / 'flat')}",
            "--set", "teacher.min_margin=0.0"]
    assert cli.main(["teacher", *args]) == 0
    assert cli.main(["label", *args]) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(error) == 1 and "on the teacher-heldout split (30 examples), not above the " \
        "majority-class baseline's" in error[0], error
    assert not (run / "store").exists()
    # Lowering the margin, as the error suggests, labels on the same run directory: the
    # margin is labeling's setting, not one the teacher stage was made from.
    assert cli.main(["teacher", *args, "--set", "teacher.min_margin=-1.0"]) == 0
    assert cli.main(["label", *args, "--set", "teacher.min_margin=-1.0"]) == 0
    assert (run / "store" / "manifest.json").exists()


def test_the_gate_measures_teacher_and_baseline_on_the_same_examples(small_task):
    cfg = config.load("configs/demo.yaml", [small_task["sets"][i + 1]
                                            for i in range(0, len(small_task["sets"]), 2)])
    teacher = models.load(small_task["teacher_classifier"])[0]
    task = tasks.get("sst2")
    result = gate.check(cfg, task, teacher, small_task["teacher_classifier"])
    # Without a heldout split, the teacher stage carves 10% of train for itself: the teacher
    # trains on the rest and is graded on those 30 examples, never on what it fitted.
    train, graded, name = gate.sources(cfg, task)
    assert name == result["split"] == "teacher-heldout"
    assert (train.total_examples, graded.total_examples, result["examples"]) == (270, 30, 30)
    train_ids = {ex["id"] for ex in train.get_tfdata().as_numpy_iterator()}
    graded = list(graded.get_tfdata().as_numpy_iterator())
    assert not train_ids & {ex["id"] for ex in graded}
    labels = np.array([int(line.rsplit("\t", 1)[1]) for line in
                       open(f"{small_task['glue_dir']}/train.tsv").read().splitlines()[1:]])
    assert len(train_ids) + len(graded) == len(labels) == 300
    majority = np.bincount([ex["label"] for ex in train.get_tfdata().as_numpy_iterator()]).argmax()
    assert abs(result["baseline"] - np.mean([ex["label"] == majority for ex in graded])) < 1e-9
    assert result["margin"] == -1.0


def test_teacher_restarts_keep_the_best_on_the_gate_split_and_report_all(small_task, tmp_path):
    run = tmp_path / "run"
    args = ["configs/demo.yaml", "--output", str(run), *small_task["sets"],
            "--set", "teacher.finetuned=null", "--set", "teacher.restarts=3",
            "--set", "teacher.train.epochs=1", "--set", "data.heldout_fraction=0.2"]
    assert cli.main(["teacher", *args]) == 0
    restarts = json.loads((run / "teacher" / "restarts.json").read_text())
    assert [r["seed"] for r in restarts] == [0, 1, 2]
    assert all(r["split"] == "heldout" for r in restarts)
    best = max(restarts, key=lambda r: r["score"])
    done = json.loads((run / "teacher" / "done.json").read_text())["summary"]
    assert done["kept_restart"] == best["restart"] and done["seed"] == best["seed"]
    # The exported teacher is the kept one: it scores what its restart recorded.
    cfg = config.load("configs/demo.yaml", [a for a in args[3:] if a != "--set"])
    teacher = models.load(str(run / "teacher" / "model"))[0]
    assert abs(gate.scores(cfg, tasks.get("sst2"), teacher)["teacher"] - best["score"]) < 1e-6
    assert not list((run / "teacher").glob("restart[0-9]*"))  # Checkpoints go once scored.
    # A rerun finds the stage done: no teacher trains again.
    assert cli.main(["teacher", *args]) == 0
    assert json.loads((run / "teacher" / "restarts.json").read_text()) == restarts
