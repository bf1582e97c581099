"""What the student stages (distill, finetune) share: where they write, what they are made of."""
from __future__ import annotations

import os

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from distill import config as config_lib, distribute, models


def stage_dir(run_dir: str, stage: str) -> str:
    return os.path.join(run_dir, "student", stage)


def inputs_for(cfg: config_lib.Config, stage: str, upstream: dict) -> dict:
    """The config fields a student stage reads, plus its upstream artifacts' fingerprints."""
    student = config_lib.to_dict(cfg)["student"]
    keep = ("encoder", "preprocessor", "lower_case", "seq_length", "init", stage)
    if stage == "distill":
        keep += ("loss", "temperature", "alpha")
    return {"task": cfg.task, "seed": cfg.seed, "precision": cfg.precision, "stage": stage,
            "upstream": upstream, "student": {k: student[k] for k in keep}}


def save(model, directory: str, meta: dict) -> None:
    """The classifier SavedModel (for evaluation) and its weights (for the next stage)."""
    models.export(model, os.path.join(directory, "model"), meta)
    with distribute.writes_to(os.path.join(directory, "weights")) as path:
        tf.train.Checkpoint(model=model).write(path)
