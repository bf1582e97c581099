"""The training loop shared by every stage: AdamW with BERT's schedule, checkpoints, logs.

`fit` reads top to bottom like nanoGPT's train.py: set the learning rate, step,
log, checkpoint. It resumes from the last checkpoint in its work directory with
optimizer state, step counter and data position (each epoch's order depends
only on the seed and the epoch, so the resumed run skips exactly the batches it
had done). Progress goes to a tqdm bar and TensorBoard (`WORKDIR/tensorboard`).
"""
from __future__ import annotations

import functools
import gc
import json
import os
import time
from typing import Callable

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
import tf_keras as keras
from tqdm import tqdm

from distill import distribute, encoders, rundir, text as text_lib
from distill.config import Schedule
from distill.errors import UserError


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


class AdamW(keras.optimizers.AdamW):
    """Keras' AdamW with each variable's update done by one fused kernel (ResourceApplyAdam).

    Keras runs Adam's update as about ten elementwise ops per variable on a CPU (it
    compiles them with XLA only on GPUs), a third of a small student's step; TensorFlow's
    fused kernel reads and writes each tensor once. The update is the same (Kingma & Ba's
    Adam with Keras' epsilon placement, decoupled weight decay first); the slot variables
    are Keras' own, so checkpoints are interchangeable. A sparse gradient (an embedding
    table's) is made dense first: Adam updates every row's moments at every step anyway.
    The step's scalars (learning rate, bias corrections) are computed once per step, not
    once per variable: a student has hundreds of variables, and each op costs a trace.
    The decay is one multiplication whose result becomes the variable (TensorFlow adopts its
    buffer), not Keras' multiply-then-subtract, and the gradients are multiplied by the clip's
    scale only when their norm exceeds the limit: each was a pass over every parameter
    (together 25 of an L-12 H-512 student's 105 ms of optimizer step, benchmarks/RESULTS.md).
    """

    def apply_gradients(self, grads_and_vars, *args, **kwargs):
        # This step's scalars, by dtype; set past tracking, so checkpoints never see it.
        object.__setattr__(self, "_scalars", {})
        return super().apply_gradients(grads_and_vars, *args, **kwargs)

    def _clip_gradients(self, grads):
        """The clip to a global norm, of the gradients as the update sees them: an embedding
        table's sparse gradient is made dense first (Keras takes the norm of its rows as
        gathered, so a token seen 32 times in a batch counts as 32 rows, not their sum).
        Below the limit the gradients are returned as they are (Keras multiplies each by
        1.0 there)."""
        if not self.global_clipnorm:
            return super()._clip_gradients(grads)
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                 for g in grads]
        norm = tf.linalg.global_norm(grads)
        return tf.cond(norm > self.global_clipnorm,
                       lambda: tf.clip_by_global_norm(grads, self.global_clipnorm, norm)[0],
                       lambda: list(grads))

    def _apply_weight_decay(self, variables):
        """Done in `update_step`, just before the variable's Adam update, as Keras orders it."""

    def _step_scalars(self, dtype) -> dict:
        if dtype not in self._scalars:
            step = tf.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
            self._scalars[dtype] = {
                "beta1": beta_1, "beta2": beta_2, "beta1_power": tf.pow(beta_1, step),
                "beta2_power": tf.pow(beta_2, step), "lr": tf.cast(self.learning_rate, dtype),
                "epsilon": tf.cast(self.epsilon, dtype)}
            # What the decay keeps of each weight: one multiplication of each tensor.
            self._scalars[dtype]["keep"] = 1.0 - self._scalars[dtype]["lr"] * tf.cast(
                self.weight_decay or 0.0, dtype)
        return self._scalars[dtype]

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        scalars = dict(self._step_scalars(variable.dtype))
        keep = scalars.pop("keep")
        if self.weight_decay and self._use_weight_decay(variable):
            variable.assign(variable * keep)
        slot = self._index_dict[self._var_key(variable)]
        tf.raw_ops.ResourceApplyAdam(var=variable.handle, m=self._momentums[slot].handle,
                                     v=self._velocities[slot].handle, grad=gradient, **scalars)


def adamw(schedule: Schedule, total_steps: int) -> keras.optimizers.Optimizer:
    """AdamW as BERT trains it: no weight decay on LayerNorm parameters and biases, and the
    gradient clipped to a global norm (after the replicas' gradients are summed, so the
    clip is that of the whole batch's gradient)."""
    lr = WarmupLinearDecay(schedule.learning_rate, total_steps, int(schedule.warmup * total_steps))
    opt = AdamW(learning_rate=lr, weight_decay=schedule.weight_decay, beta_1=0.9, beta_2=0.999,
                epsilon=1e-6, global_clipnorm=schedule.clip_norm or None)
    opt.exclude_from_weight_decay(var_names=["layer_norm", "LayerNorm", "bias"])
    return opt


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: each epoch's order depends on the run's seed and the
    epoch alone, so a resumed run can skip exactly the batches it had done."""
    return seed * 1000 + epoch


SHUFFLE_BUFFER = 10_000  # Examples held by each shuffle (training and MLM).


def batches(dataset: tf.data.Dataset, packer: text_lib.Packer, batch_size: int,
            shuffle_seed: int | None = None, sort_window: int = 1,
            buffer: int = SHUFFLE_BUFFER, multiple: int = 1) -> tf.data.Dataset:
    """Examples -> shuffled (if seeded), batched, tokenized batches, padded per batch to
    their longest, rounded up to `multiple` (`text.pad_multiple`).

    With `sort_window` > 1, shuffled batches come from windows of that many
    batches sorted by word pieces (`text.sorted_by_length`), in shuffled order: a batch
    then pads to little more than its own examples' length instead of the longest
    of a random draw. The number of batches stays ceil(examples / batch_size), and
    the order depends only on the seed, so a resumed run skips exactly the batches
    it had done. `buffer` examples are shuffled at a time: a set read in a uniform mix
    (`distill/mixing.py`) needs no more than the default; the whole set is one full
    permutation.
    """
    full = isinstance(tf.distribute.get_strategy(), tf.distribute.TPUStrategy)  # Fixed shapes.
    encode = functools.partial(packer, full_length=full, multiple=multiple)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
    if shuffle_seed is None or sort_window <= 1:
        dataset = dataset.batch(batch_size).map(encode, num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def by_length(window):
        ordered = text_lib.sorted_by_length(window, encode)
        del ordered["position"]
        return ordered

    def cut(batch):
        return batch if full else text_lib.cut_to_longest(batch, multiple)

    dataset = (dataset.batch(batch_size * sort_window)
               .map(by_length, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
               .batch(batch_size).map(cut)
               .shuffle(sort_window, seed=shuffle_seed, reshuffle_each_iteration=False))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _numbers(batch: dict) -> dict:
    """A batch without its strings (ids, raw text): no accelerator and no XLA step takes them."""
    return {k: v for k, v in batch.items() if v.dtype != tf.string}


def steps_per_epoch(examples: int, batch_size: int) -> int:
    return max(1, -(-examples // batch_size))


def build_step(model: keras.Model, optimizer, loss_fn: Callable, schedule: Schedule,
               input_names) -> Callable:
    """One training step on a global batch under the current strategy: (loss, parts).

    Each replica's mean loss is weighted by its share of the global batch, so the summed
    gradient is that of the global batch's mean, however it is split. Traced without
    autograph: the step has no Python control flow on tensors, and converting the model's
    code costs about a second of every fit.
    """
    strategy = tf.distribute.get_strategy()
    # On one device no all-reduce is traced (the batch's share is 1, and the gradients need no
    # aggregation): TensorFlow's `ReplicaContext.all_reduce` registers a gradient in a
    # process-wide registry at every trace, which keeps the traced step, and the variables it
    # captures (the optimizer's slots, a sweep trial's whole model), alive for good.
    distributed = tf.distribute.has_strategy()

    def replica_step(batch):
        size = tf.cast(tf.shape(batch[input_names[0]])[0], tf.float32)
        share = (size / tf.distribute.get_replica_context().all_reduce("SUM", size)
                 if distributed else 1.0)
        with tf.GradientTape() as tape:
            logits = model({n: batch[n] for n in input_names}, training=True)
            loss, parts = loss_fn(logits, batch)
            loss = tf.where(size > 0, loss, 0.0) * share
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables),
                                  skip_gradients_aggregation=not distributed)
        return loss, {k: tf.where(size > 0, v, 0.0) * share for k, v in parts.items()}

    compiled = (tf.function(replica_step, jit_compile=True, autograph=False)
                if schedule.jit_compile else replica_step)

    def numbers_only(batch):
        return compiled(_numbers(batch))

    def step(batch):
        loss, parts = strategy.run(numbers_only, args=(batch,))
        return (strategy.reduce("SUM", loss, axis=None),
                {k: strategy.reduce("SUM", v, axis=None) for k, v in parts.items()})

    if tf.distribute.has_strategy():  # Distributed batches: let TensorFlow relax the shapes.
        return tf.function(step, reduce_retracing=True, autograph=False)
    traced = []

    def train_step(batch):
        if not traced:  # One trace for every batch shape (reduce_retracing takes two).
            traced.append(tf.function(step, input_signature=[_any_shape(batch)],
                                      autograph=False))
        return traced[0](batch)

    return train_step


def _any_shape(batch: dict) -> dict:
    """`batch`'s specs with every dimension unknown: length-sorted windows give batches of
    many lengths, and each trace of a training step costs seconds."""
    return tf.nest.map_structure(lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype), batch)


def epoch_batches(make_dataset: Callable[[int], tf.data.Dataset], epoch: int, skip: int):
    """Epoch `epoch`'s batches after the first `skip`; under a strategy, each worker's part."""
    dataset = make_dataset(epoch).skip(skip)
    if not tf.distribute.has_strategy():
        return dataset
    dataset = dataset.map(_numbers)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    strategy = tf.distribute.get_strategy()
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def restore(ckpt: tf.train.Checkpoint, checkpoints: str, step: tf.Variable, desc: str) -> int:
    """Restores the last checkpoint in `checkpoints` (the chief's, on a shared filesystem),
    if any; returns the step it reached (0 for a fresh start)."""
    latest = tf.train.latest_checkpoint(checkpoints)
    if latest:
        try:
            ckpt.restore(latest).assert_existing_objects_matched()
        except AssertionError as e:
            raise UserError(
                f"{latest} was written by a differently built model (one trained through "
                f"hub.KerasLayer before encoders ran natively, or another encoder); it was not "
                f"changed. Set native_encoder: false to resume it, or remove {checkpoints} to "
                f"start this stage afresh. ({str(e)[:200]})") from None
        tqdm.write(f"[{desc}] resuming from {latest} at step {int(step.numpy())}")
    return int(step.numpy())


class _Rate:
    """The steady training rate: from the end of the first (tracing) steps to the last step."""

    WARM_STEPS = 5

    def __init__(self, start: int):
        self.start, self.t_warm, self.t_last = start, None, None

    def tick(self, done: int) -> None:
        self.t_last = time.time()
        if done - self.start == self.WARM_STEPS:
            self.t_warm = self.t_last

    def examples_per_s(self, total: int, batch_size: int) -> float | None:
        if self.t_warm is None or total - self.start <= self.WARM_STEPS:
            return None
        return (total - self.start - self.WARM_STEPS) * batch_size / (self.t_last - self.t_warm)


def _log(done: int, total: int, loss, parts: dict, optimizer, bar) -> None:
    """Every tenth step (and the last): the bar's loss and TensorBoard's scalars."""
    if done % 10 and done != total:
        return
    bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)
    tf.summary.scalar("loss", loss, step=done)
    tf.summary.scalar("learning_rate", optimizer.learning_rate, step=done)
    for name, value in parts.items():
        tf.summary.scalar(f"loss/{name}", value, step=done)


class _Curve:
    """The score before training (epoch 0: what the stage starts from, e.g. PDF's fine-tuning
    from PD's distilled weights) and after each epoch (`fit`'s `evaluate`), kept in
    WORKDIR/epochs.json so that a resumed run keeps the epochs it had scored."""

    def __init__(self, workdir: str, evaluate: Callable[[], dict] | None):
        self.path, self.evaluate = os.path.join(workdir, "epochs.json"), evaluate
        self.rows = []
        if evaluate and os.path.isfile(self.path):
            with open(self.path) as f:
                self.rows = json.load(f)

    def after(self, done: int, per_epoch: int, total: int) -> None:
        if not self.evaluate or (done % per_epoch and done != total):
            return
        epoch = -(-done // per_epoch)
        if any(r["epoch"] == epoch for r in self.rows):
            return
        self.rows.append({"epoch": epoch, "step": done, **self.evaluate()})
        tf.summary.scalar(f"eval/{self.rows[-1]['split']}", self.rows[-1]["score"], step=done)
        if distribute.is_chief():
            rundir.write_json_atomic(self.path, self.rows)


def fit(model: keras.Model, make_dataset: Callable[[int], tf.data.Dataset],
        examples: int, loss_fn: Callable, schedule: Schedule, workdir: str,
        desc: str = "train", input_names=encoders.INPUT_NAMES,
        evaluate: Callable[[], dict] | None = None) -> dict:
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
      evaluate: () -> {"split", "score"}, called before the first step and after each epoch
        (one device only): the summary's `epochs` then has the curve, epoch 0 first.
    """
    collect = _worth_collecting(model)
    if collect:
        gc.collect()  # What the last stage left: a labeling function holds its teacher.
    try:
        with distribute.bf16_rewrite_for(model):  # Only where the policy cannot reach.
            return _fit(model, make_dataset, examples, loss_fn, schedule, workdir, desc,
                        input_names, evaluate)
    finally:
        if collect:
            gc.collect()  # This fit's optimizer and step.


# A traced function refers to itself in cycles and holds the variables it captures: a labeling
# function its teacher's weights, a training step the optimizer's slots (880 MB for BERT-Base).
# Python frees cycles only at a full collection, which comes by object count, not by size:
# without one the next stage allocated while they still held their memory (an L-12 H-512
# student's second fit: 3,478 -> 2,947 MiB peak, benchmarks/RESULTS.md). A collection takes a
# few tenths of a second, so `fit` runs one before and after only for a model this big
# (every pretrained student is; test encoders are not).
COLLECT_FROM_BYTES = 8 * 2 ** 20


def _worth_collecting(model: keras.Model) -> bool:
    size = sum(v.shape.num_elements() * v.dtype.size for v in model.trainable_variables)
    return size >= COLLECT_FROM_BYTES


def _fit(model: keras.Model, make_dataset: Callable[[int], tf.data.Dataset],
         examples: int, loss_fn: Callable, schedule: Schedule, workdir: str, desc: str,
         input_names, evaluate: Callable[[], dict] | None) -> dict:
    strategy = tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)
    per_epoch = steps_per_epoch(examples, schedule.batch_size)
    total = max(1, int(round(schedule.epochs * per_epoch)))
    optimizer = adamw(schedule, total)
    # Its slots now, not in the first step: a function that makes variables is traced twice.
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    checkpoints = rundir.checkpoints(workdir)
    start = restore(ckpt, checkpoints, step, desc)
    writer = (tf.summary.create_file_writer(os.path.join(workdir, "tensorboard")) if chief
              else tf.summary.create_noop_writer())
    train_step = build_step(model, optimizer, loss_fn, schedule, input_names)
    if strategy.num_replicas_in_sync > 1:
        tqdm.write(f"[{desc}] global batch {schedule.batch_size} over "
                   f"{strategy.num_replicas_in_sync} replicas ({type(strategy).__name__})")
    t0, rate, loss = time.time(), _Rate(start), None
    curve = _Curve(workdir, evaluate if strategy.num_replicas_in_sync == 1 else None)
    with (distribute.writes_to(checkpoints) as directory, writer.as_default(),
          tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True,
               mininterval=1.0, disable=not chief) as bar):
        saver = _Saver(ckpt, directory, schedule.checkpoint_every)
        done = start  # Counted in Python; `step` carries it in checkpoints.
        curve.after(done, per_epoch, total)  # Epoch 0, unless a resumed run scored it.
        while done < total:
            done, loss = _run_epoch(train_step, make_dataset, done, per_epoch, total, step,
                                    saver, rate, bar, optimizer, desc, loss)
            curve.after(done, per_epoch, total)
    steady = rate.examples_per_s(total, schedule.batch_size)
    summary = {"steps": total, "steps_this_run": total - start,
               "seconds": round(time.time() - t0, 2), "steady_examples_per_s": steady,
               "final_loss": None if loss is None else float(loss)}
    return {**summary, "epochs": curve.rows} if evaluate else summary


class _Saver:
    """Checkpoints every `every` steps and after each epoch; keeps the last one only."""

    def __init__(self, ckpt: tf.train.Checkpoint, directory: str, every: int):
        self.manager = tf.train.CheckpointManager(ckpt, directory, max_to_keep=1)
        self.directory, self.every = directory, every

    def save(self, done: int, force: bool = False) -> None:
        if force or done % self.every == 0:
            with rundir.output_errors(self.directory):  # A failed save keeps the previous one.
                self.manager.save(checkpoint_number=done)


def _run_epoch(train_step, make_dataset, done: int, per_epoch: int, total: int, step, saver,
               rate: _Rate, bar, optimizer, desc: str, loss):
    """Runs the rest of the epoch that step `done` is in; returns (steps done, last loss).

    Raises:
      RuntimeError: if the epoch yields no batch (the data changed since the checkpoint).
    """
    epoch, done_in_epoch = divmod(done, per_epoch)
    before = done
    for batch in epoch_batches(make_dataset, epoch, done_in_epoch):
        loss, parts = train_step(batch)
        done += 1
        rate.tick(done)
        step.assign(done)
        bar.update(1)
        _log(done, total, loss, parts, optimizer, bar)
        saver.save(done)
        if done >= total:
            break
    if done == before:
        raise RuntimeError(f"[{desc}] epoch {epoch} yielded no batch after skipping "
                           f"{done_in_epoch}; the data changed since the checkpoint.")
    saver.save(done, force=True)
    return done, loss
