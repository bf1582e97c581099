"""Distillation and task losses: pure functions of logits (Hinton et al. 2015; Turc et al. 2019, Sec. 2).

`total(...)` mixes the distillation loss with the hard-label loss by `alpha`
where labels are known and returns the total and its named parts, for
TensorBoard. A config's `student.distill.loss: soft_ce` selects `soft_ce` here; the
defaults of loss, temperature and alpha live in the config alone.
"""
from __future__ import annotations

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from distill.errors import UserError


def soft_ce(student_logits, teacher_logits, temperature: float):
    """Cross-entropy of the student against the teacher's softened distribution, times T².

    The T² factor keeps gradient magnitudes comparable across temperatures
    (Hinton et al. 2015, Sec. 2). Returns one value per example.
    """
    t = tf.cast(temperature, student_logits.dtype)
    target = tf.nn.softmax(teacher_logits / t, axis=-1)
    return -t * t * tf.reduce_sum(target * tf.nn.log_softmax(student_logits / t, axis=-1), axis=-1)


def kl(student_logits, teacher_logits, temperature: float):
    """KL(teacher || student) at temperature T, times T²: soft_ce minus the teacher's entropy."""
    t = tf.cast(temperature, student_logits.dtype)
    log_p = tf.nn.log_softmax(teacher_logits / t, axis=-1)
    log_q = tf.nn.log_softmax(student_logits / t, axis=-1)
    return t * t * tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)


def mse(student_logits, teacher_logits, temperature: float):
    """Squared error between outputs: the distillation loss for regression (STS-B)."""
    del temperature  # A regression output has no temperature.
    return tf.reduce_mean(tf.square(student_logits - teacher_logits), axis=-1)


DISTILL_LOSSES = {"soft_ce": soft_ce, "kl": kl, "mse": mse}


def hard(logits, labels, regression: bool):
    """Task loss on gold labels: cross-entropy, or squared error for regression."""
    if regression:
        return tf.square(logits[:, 0] - tf.cast(labels, logits.dtype))
    return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)


def known(labels, regression: bool):
    """1.0 where the gold label is known (not -1 / NaN), else 0.0."""
    if regression:
        return tf.cast(tf.logical_not(tf.math.is_nan(labels)), tf.float32)
    return tf.cast(labels >= 0, tf.float32)


def get(name: str):
    if name not in DISTILL_LOSSES:
        raise UserError(f"student.distill.loss: unknown loss {name!r}; expected one of "
                        f"{sorted(DISTILL_LOSSES)}.")
    return DISTILL_LOSSES[name]


def total(student_logits, teacher_logits, labels, *, loss: str, temperature: float,
          alpha: float, regression: bool):
    """(1 - alpha) * distill + alpha * hard, averaged over the batch.

    Both terms are sums over the batch's examples divided by its size; an example
    without a gold label adds nothing to the hard term. So each labeled example
    weighs the same whatever batch it lands in and however a batch is split across
    replicas (a mean over the known labels alone gave one labeled example in a batch
    the whole weight alpha). An unlabeled transfer set simply has no hard term.

    Returns:
      (total, {"distill": ..., "hard": ...}) as scalars.
    """
    student_logits = tf.cast(student_logits, tf.float32)
    distill_loss = tf.reduce_mean(get(loss)(student_logits, teacher_logits, temperature))
    parts = {"distill": distill_loss}
    if alpha == 0:
        return distill_loss, parts
    weight = known(labels, regression)
    safe = tf.where(weight > 0, labels, tf.zeros_like(labels))
    hard_loss = tf.reduce_mean(weight * hard(student_logits, safe, regression))
    parts["hard"] = hard_loss
    return (1.0 - alpha) * distill_loss + alpha * hard_loss, parts
