"""The training loop shared by every stage: AdamW with BERT's schedule, checkpoints, logs.

`fit` reads top to bottom like nanoGPT's train.py: set the learning rate, step,
log, checkpoint. It resumes from the last checkpoint in its work directory with
optimizer state, step counter and data position (each epoch's order depends
only on the seed and the epoch, so the resumed run skips exactly the batches it
had done). Progress goes to a tqdm bar and TensorBoard (`WORKDIR/tensorboard`).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from distill import encoders, text as text_lib


@dataclasses.dataclass
class Schedule:
    """The optimisation hyperparameters of one training stage (BERT's defaults)."""

    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup: float = 0.1  # Fraction of all steps spent warming up linearly.
    weight_decay: float = 0.01
    dropout: float = 0.1
    checkpoint_every: int = 500  # Steps; a checkpoint is also written after each epoch.


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then linear decay to zero (Devlin et al. 2019, App. A.2)."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int):
        self.peak, self.total, self.warmup = peak, max(1, total_steps), warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = step / max(1, self.warmup)
        decay = (self.total - step) / max(1, self.total - self.warmup)
        return self.peak * tf.maximum(0.0, tf.where(step < self.warmup, warm, decay))

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total, "warmup_steps": self.warmup}


def adamw(schedule: Schedule, total_steps: int) -> keras.optimizers.Optimizer:
    """AdamW as BERT trains it: no weight decay on LayerNorm parameters and biases."""
    lr = WarmupLinearDecay(schedule.learning_rate, total_steps, int(schedule.warmup * total_steps))
    opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=schedule.weight_decay,
                                    beta_1=0.9, beta_2=0.999, epsilon=1e-6)
    opt.exclude_from_weight_decay(var_names=["layer_norm", "LayerNorm", "bias"])
    return opt


def batches(dataset: tf.data.Dataset, encoder: text_lib.Encoder, batch_size: int,
            shuffle_seed: int | None = None, buffer: int = 10_000) -> tf.data.Dataset:
    """Examples -> shuffled (if seeded), batched, tokenized batches, padded per batch."""
    if shuffle_seed is not None:
        # A fixed seed per call (epoch) makes the order reproducible for resume.
        dataset = dataset.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(encoder, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(examples: int, batch_size: int) -> int:
    return max(1, -(-examples // batch_size))


def fit(model: keras.Model, make_dataset: Callable[[int], tf.data.Dataset],
        examples: int, loss_fn: Callable, schedule: Schedule, workdir: str,
        desc: str = "train", input_names=encoders.INPUT_NAMES) -> dict:
    """Trains `model` on `make_dataset(epoch)` batches and returns a summary.

    Args:
      model: maps a batch's encoder inputs to logits.
      make_dataset: epoch -> dataset of batches (dicts with the encoder inputs
        and whatever `loss_fn` needs); must give the same order for the same epoch.
      examples: examples per epoch (fixes steps per epoch and the schedule).
      loss_fn: (logits, batch) -> (loss, dict of named parts).
      schedule: optimisation hyperparameters.
      workdir: checkpoints and TensorBoard logs go here; a rerun resumes.
      input_names: the batch features the model takes.
    """
    per_epoch = steps_per_epoch(examples, schedule.batch_size)
    total = max(1, int(round(schedule.epochs * per_epoch)))
    optimizer = adamw(schedule, total)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(ckpt, os.path.join(workdir, "checkpoints"), max_to_keep=1)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        tqdm.write(f"[{desc}] resuming from {manager.latest_checkpoint} at step {int(step)}")
    writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        with tf.GradientTape() as tape:
            logits = model({n: batch[n] for n in input_names}, training=True)
            loss, parts = loss_fn(logits, batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, parts

    start, t0 = int(step), time.time()
    warm_steps, t_warm = 5, None  # The first steps trace; the steady rate starts after them.
    bar = tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True,
               mininterval=1.0)
    loss = None
    with writer.as_default():
        while int(step) < total:
            epoch, done_in_epoch = divmod(int(step), per_epoch)
            before = int(step)
            for batch in make_dataset(epoch).skip(done_in_epoch):
                loss, parts = train_step(batch)
                step.assign_add(1)
                bar.update(1)
                if int(step) - start == warm_steps:
                    t_warm = time.time()
                if int(step) % 10 == 0 or int(step) == total:
                    bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
                    tf.summary.scalar("loss", loss, step=step)
                    tf.summary.scalar("learning_rate", optimizer.learning_rate, step=step)
                    for name, value in parts.items():
                        tf.summary.scalar(f"loss/{name}", value, step=step)
                if int(step) % schedule.checkpoint_every == 0:
                    manager.save(checkpoint_number=step)
                if int(step) >= total:
                    break
            if int(step) == before:
                raise RuntimeError(f"[{desc}] epoch {epoch} yielded no batch after skipping "
                                   f"{done_in_epoch}; the data changed since the checkpoint.")
            manager.save(checkpoint_number=step)
    bar.close()
    end = time.time()
    steady = None
    if t_warm is not None and total - start > warm_steps:
        steady = (total - start - warm_steps) * schedule.batch_size / (end - t_warm)
    return {"steps": total, "steps_this_run": total - start, "seconds": round(end - t0, 2),
            "steady_examples_per_s": steady, "final_loss": None if loss is None else float(loss)}
