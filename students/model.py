"""The student model of every student stage: built, initialised, saved, and what it is made of.

Initialisation is pre-trained weights as loaded, or a fresh random draw:
"random" re-draws every variable of the loaded encoder the way BERT initialises
it (truncated normal, stddev 0.02; zero biases; unit LayerNorm scales), so that
plain distillation from scratch (the paper's "D") uses the same architecture
as pre-trained distillation ("PD").
"""
from __future__ import annotations

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

from distill import (config as config_lib, data, distribute, encoders, metrics, models,
                     tasks as tasks_lib, text, training)


def reinitialize(variables, seed: int = 0, stddev: float = encoders.INIT_STDDEV) -> int:
    """Re-draws `variables` in place; returns how many were changed."""
    rng = tf.random.Generator.from_seed(seed)
    for v in variables:
        name = v.name.lower()
        if name.endswith(("gamma:0", "scale:0")):
            v.assign(tf.ones_like(v))
        elif name.endswith(("beta:0", "bias:0")) or v.shape.rank == 1:
            v.assign(tf.zeros_like(v))
        else:
            v.assign(rng.truncated_normal(v.shape, stddev=stddev, dtype=v.dtype))
    return len(variables)


def build(cfg: config_lib.Config, task: tasks_lib.Task, stage: str,
          start_from: str | None = None) -> keras.Model:
    """The student classifier for `stage`, with that stage's dropout.

    Args:
      cfg: the run config (`student.encoder`, `student.init`, `seed`).
      task: the GLUE task (number of outputs).
      stage: "distill" or "finetune": whose schedule's `dropout` the classifier gets.
      start_from: a weights checkpoint from an earlier student stage, or None.
    """
    dropout = getattr(cfg.student, stage).dropout
    model = models.build(cfg.student.encoder, task.num_outputs, dropout, seed=cfg.seed,
                         native=cfg.native_encoder, recompute=cfg.recompute)
    if start_from:
        tf.train.Checkpoint(model=model).read(start_from).assert_existing_objects_matched()
    elif cfg.student.init == "random":
        reinitialize(model.trainable_variables, seed=cfg.seed)
    return model


def epoch_scorer(cfg: config_lib.Config, task: tasks_lib.Task, model: keras.Model):
    """() -> the student's score on the heldout split carved from train, or else the first dev
    split, for the curve after each epoch (reported, never selected on)."""
    split = data.HELDOUT if cfg.data.heldout_fraction > 0 else task.dev_splits[0].name
    source = data.labeled(cfg.data, task, split)
    packer = text.packer(cfg.student, task.is_pair)
    # Encoded on the first epoch's pass, read from memory on the later ones.
    batches = training.batches(source.get_tfdata(), packer, cfg.eval_batch_size).cache()

    def score() -> dict:
        out = models.predict(lambda x: model(x, training=False), batches)
        return {"split": split, "score": metrics.compute(task, out["label"], out["logits"])["score"]}

    return score


def inputs(cfg: config_lib.Config, stage: str, upstream: dict) -> dict:
    """The config fields a student stage reads, plus its upstream artifacts' fingerprints."""
    student = config_lib.to_dict(cfg)["student"]
    keep = ("encoder", "preprocessor", "lower_case", "seq_length", "init", stage)
    return {"task": cfg.task, "seed": cfg.seed, "precision": cfg.precision, "stage": stage,
            "upstream": upstream, "student": {k: student[k] for k in keep}}


def save(model: keras.Model, model_dir: str, weights: str, meta: dict) -> None:
    """The classifier SavedModel (for evaluation) and its weights (for the next stage)."""
    models.export(model, model_dir, meta)
    with distribute.writes_to(weights) as path:
        tf.train.Checkpoint(model=model).write(path)
