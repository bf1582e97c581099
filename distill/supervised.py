"""Fine-tuning a classifier on gold labels: the teacher's first stage and the student's last.

    distill teacher CONFIG --output RUN     # teacher on D_L
    distill finetune CONFIG --output RUN    # student on D_L after distillation
"""
from __future__ import annotations

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras

from distill import data, losses, tasks as tasks_lib, text, training


def train_on_labels(model: keras.Model, task: tasks_lib.Task, source: data.Source,
                    packer: text.Packer, schedule: training.Schedule, seed: int,
                    workdir: str, desc: str, evaluate=None) -> dict:
    """Trains `model` with the task loss on `source`; resumes from `workdir`.

    Each epoch is a full seeded permutation of D_L (the shuffle holds all of it): GLUE's
    largest training split is MNLI's 392,702 pairs, and the glue_dir reader holds the
    split in memory anyway, so its file order (say, sorted by genre) never becomes a
    curriculum. The large transfer sets are mixed without holding them (`distill/mixing.py`).
    """
    def make_dataset(epoch):
        return training.batches(source.get_tfdata(), packer, schedule.batch_size,
                                shuffle_seed=training.epoch_seed(seed, epoch),
                                sort_window=schedule.sort_window,
                                buffer=max(1, source.total_examples),
                                multiple=text.pad_multiple(schedule.jit_compile))

    def loss_fn(logits, batch):
        loss = tf.reduce_mean(losses.hard(tf.cast(logits, tf.float32), batch["label"],
                                          task.is_regression))
        return loss, {"hard": loss}

    return training.fit(model, make_dataset, source.total_examples, loss_fn, schedule, workdir,
                        desc, evaluate=evaluate)
