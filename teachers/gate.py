"""The teacher's quality gate: no store from a teacher that learned nothing.

BERT-Large sometimes fails to train on small tasks (RTE, MRPC, STS-B, CoLA); one collapsed
teacher would silently poison every student distilled from its store. Before labeling, the
teacher must beat the majority-class baseline (the mean, for STS-B) on the heldout split
carved from train (`data.heldout_fraction`), or, without one, on the first
`GATE_EXAMPLES` examples of D_L's train split (those the teacher trained on), by
`teacher.min_margin`.

    distill label CONFIG --output RUN    # runs the gate first
"""
from __future__ import annotations

from distill import config as config_lib, data, metrics, models, tasks as tasks_lib, text
from distill.errors import UserError

GATE_EXAMPLES = 2000  # Without a heldout split: that many of train's first examples.


def scores(cfg: config_lib.Config, task: tasks_lib.Task, teacher) -> dict:
    """The teacher's and the majority-class (mean) baseline's scores on the gate's split.

    Args:
      teacher: `fn(inputs) -> logits`: a loaded classifier (`models.load`) or a Keras model.
    """
    heldout = cfg.data.heldout_fraction > 0
    split = data.HELDOUT if heldout else "train"
    cap = min(GATE_EXAMPLES, cfg.data.max_train_examples or GATE_EXAMPLES)
    source = data.labeled(cfg.data, task, split, limit=None if heldout else cap)
    out = models.predict_source(teacher, source, text.packer(cfg.teacher, task.is_pair),
                                cfg.eval_batch_size)
    train_labels = data.labels(data.labeled(cfg.data, task, "train"), task)
    return {"split": split, "examples": int(len(out["label"])),
            "teacher": metrics.compute(task, out["label"], out["logits"])["score"],
            "baseline": metrics.majority_baseline(task, train_labels, out["label"])["score"]}


def check(cfg: config_lib.Config, task: tasks_lib.Task, teacher, teacher_model: str) -> dict:
    """`scores`, refused unless the teacher beats the baseline by `teacher.min_margin`.

    Args:
      teacher: the loaded teacher (`models.load`, split across replicas as labeling runs it).
      teacher_model: its path, for messages.

    Raises:
      UserError: naming both scores, when the teacher does not beat the baseline by
        `teacher.min_margin`.
    """
    result = {**scores(cfg, task, teacher), "margin": cfg.teacher.min_margin}
    where = f"{result['split']} split ({result['examples']} examples)"
    kind = "mean" if task.is_regression else "majority-class"
    if not result["teacher"] > result["baseline"] + cfg.teacher.min_margin:
        raise UserError(f"The teacher {teacher_model} scores {result['teacher']:.4f} on the "
                        f"{where}, not above the {kind} baseline's {result['baseline']:.4f} + "
                        f"teacher.min_margin {cfg.teacher.min_margin}: it learned nothing worth "
                        f"distilling. Train it again (more teacher.restarts, another seed or "
                        f"teacher.train schedule, in a new --output), or lower "
                        f"teacher.min_margin.")
    print(f"[label] teacher gate passed: {result['teacher']:.4f} on the {where} against the "
          f"{kind} baseline's {result['baseline']:.4f}")
    return result
