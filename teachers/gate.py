"""The teacher's quality gate: no store from a teacher that learned nothing.

BERT-Large sometimes fails to train on small tasks (RTE, MRPC, STS-B, CoLA); one collapsed
teacher would silently poison every student distilled from its store. Before labeling, the
teacher must beat the majority-class baseline (the mean, for STS-B) by `teacher.min_margin`
on examples it did not train on: the heldout split carved from train
(`data.heldout_fraction`), or, without one, a split the teacher stage carves for itself
(`teacher_split`: a seeded 10% of train, at most `GATE_EXAMPLES`), which only the teacher
leaves out (the students train on all of train). Restarts are chosen on the same split.

    distill label CONFIG --output RUN    # runs the gate first
"""
from __future__ import annotations

from distill import config as config_lib, data, metrics, models, tasks as tasks_lib, text
from distill.errors import UserError

GATE_EXAMPLES = 2000  # The teacher's own split holds at most this many examples ...
GATE_FRACTION = 0.1  # ... and at most this share of train.
TEACHER_HELDOUT = "teacher-heldout"  # Its name in messages, records and the manifest.


def teacher_split(cfg: config_lib.Config, task: tasks_lib.Task) -> dict | None:
    """What the teacher stage leaves out of train to grade the teacher on, when no heldout
    split is carved: None when one is (the teacher then trains without it already)."""
    if cfg.data.heldout_fraction > 0:
        return None
    n = data.labeled(cfg.data, task, "train").total_examples
    return {"name": TEACHER_HELDOUT, "fraction": min(GATE_FRACTION, GATE_EXAMPLES / max(n, 1)),
            "seed": cfg.data.heldout_seed}


def sources(cfg: config_lib.Config, task: tasks_lib.Task) -> tuple[data.Source, data.Source, str]:
    """(what the teacher trains on, what it is graded on, that split's name)."""
    own = teacher_split(cfg, task)
    if own is None:
        return (data.labeled(cfg.data, task, "train"), data.labeled(cfg.data, task, data.HELDOUT),
                data.HELDOUT)
    train, graded = data.heldout_split(data.labeled(cfg.data, task, "train"), own["fraction"],
                                       own["seed"])
    return train, graded, own["name"]


def scores(cfg: config_lib.Config, task: tasks_lib.Task, teacher) -> dict:
    """The teacher's and the majority-class (mean) baseline's scores on the gate's split.

    Args:
      teacher: `fn(inputs) -> logits`: a loaded classifier (`models.load`) or a Keras model.
    """
    train, graded, split = sources(cfg, task)
    out = models.predict_source(teacher, graded, text.packer(cfg.teacher, task.is_pair),
                                cfg.eval_batch_size)
    return {"split": split, "examples": int(len(out["label"])),
            "teacher": metrics.compute(task, out["label"], out["logits"])["score"],
            "baseline": metrics.majority_baseline(task, data.labels(train, task),
                                                  out["label"])["score"]}


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
