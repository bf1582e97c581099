"""Student initialisation: pre-trained weights as loaded, or a fresh random draw.

"random" re-draws every variable of the loaded encoder the way BERT initialises
it (truncated normal, stddev 0.02; zero biases; unit LayerNorm scales), so that
plain distillation from scratch (the paper's "D") uses the same architecture
as pre-trained distillation ("PD").
"""
from __future__ import annotations

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras


def reinitialize(variables, seed: int = 0, stddev: float = 0.02) -> int:
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


def build_student(cfg, task, start_from: str | None = None) -> keras.Model:
    """The student classifier: pre-trained, random, or the weights an earlier stage wrote.

    Args:
      cfg: the run config (`student.encoder`, `student.init`, `seed`).
      task: the GLUE task (number of outputs).
      start_from: a weights checkpoint from an earlier student stage, or None.
    """
    from distill import models

    model = models.build(cfg.student.encoder, task.num_outputs, cfg.student.distill.dropout,
                         seed=cfg.seed)
    if start_from:
        tf.train.Checkpoint(model=model).read(start_from).assert_existing_objects_matched()
    elif cfg.student.init == "random":
        reinitialize(model.trainable_variables, seed=cfg.seed)
    return model
