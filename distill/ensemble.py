"""Teacher ensembles: several teachers fine-tuned on D_L, one store of their combined outputs.

    teacher:
      ensemble: [{seed: 0}, {seed: 1}]     # or [{encoder: ...}, {encoder: ...}]
      combine: log_probs                   # or logits; weights: [..] per member

Member k is an ordinary teacher in RUN/teachers/<k> (`rundir.RunDir.member`: its own stage
directory, resumable); RUN/teacher records the members' fingerprints. Labeling, the quality
gate and evaluation see one teacher: `load` returns a function whose logits are the
members' combination. It lives in the core because every stage that reads the teacher
(labeling, evaluation) sees it through `load`.
"""
from __future__ import annotations

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from distill import config as config_lib, models, rundir, tasks


def member_configs(cfg: config_lib.Config) -> list[config_lib.Config]:
    """One config per member: the teacher section with that member's changes, no ensemble."""
    configs = []
    for member in cfg.teacher.ensemble:
        settings = {"teacher.ensemble": [], "teacher.weights": [], "teacher.member_logits": False}
        for key, value in member.items():
            settings["seed" if key == "seed" else f"teacher.{key}"] = value
        configs.append(config_lib.override(cfg, settings))
    return configs


def weights(cfg: config_lib.Config) -> np.ndarray:
    w = np.asarray(cfg.teacher.weights or [1.0] * len(cfg.teacher.ensemble), np.float32)
    return w / w.sum()


def combine(outputs, how: str, member_weights, regression: bool):
    """The ensemble's logits from its members' outputs [members, batch, outputs] (numpy or
    tensors): the weighted mean of log-softmax ("log_probs") or of logits ("logits")."""
    outputs = tf.convert_to_tensor(outputs, tf.float32)
    if how == "log_probs" and not regression:
        outputs = tf.nn.log_softmax(outputs, axis=-1)
    return tf.tensordot(tf.constant(member_weights, tf.float32), outputs, axes=1)


def load(cfg: config_lib.Config, run_dir: str, wrap=None):
    """The run's teacher as `fn(inputs) -> logits`: its one classifier, or the ensemble's
    combination; `fn.members` are the members' functions (the one classifier, alone).

    Args:
      wrap: applied to each member's function (e.g. `distribute.split_batches`).
    """
    if cfg.teacher.ensemble:
        root = rundir.RunDir(run_dir)
        paths = [rundir.RunDir(root.member(k).root, c).teacher_model
                 for k, c in enumerate(member_configs(cfg))]
    else:
        paths = [rundir.RunDir(run_dir, cfg).teacher_model]
    members = [models.load(p)[0] for p in paths]
    if wrap:
        members = [wrap(m) for m in members]
    if not cfg.teacher.ensemble:
        fn = members[0]
    else:
        regression, w = tasks.get(cfg.task).is_regression, weights(cfg)

        def fn(inputs):
            return combine(tf.stack([m(inputs) for m in members]), cfg.teacher.combine, w,
                           regression)

    fn.members = members
    return fn


def describe(cfg: config_lib.Config, run_dir: str) -> str:
    """The teacher in words, for messages."""
    if not cfg.teacher.ensemble:
        return rundir.RunDir(run_dir, cfg).teacher_model
    return (f"ensemble of {len(cfg.teacher.ensemble)} teachers in "
            f"{rundir.RunDir(run_dir).members} ({cfg.teacher.combine})")
