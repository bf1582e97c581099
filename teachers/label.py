"""Stage 2: the teacher labels the transfer data D_T into the soft-label store.

    distill label CONFIG --output RUN [--worker W --num-workers N]
Writes RUN/store/ (see distill/store.py and DESIGN.md). Examples are sorted by
length within windows (as training sorts them) and tokenized in the tf.data
pipeline, so the teacher pays for little padding; the store keeps the input order. Shards are
written whole or not at all, so a rerun after a crash redoes only the missing
ones; worker w of N writes shards k = w (mod N).
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import os
import threading
import time
from concurrent import futures

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from distill import (config as config_lib, data, distribute, encoders, ensemble, rundir,
                     store as store_lib, tasks, text, transfer)
from teachers import gate

# On a CPU a batch of 32 keeps a layer's activations in cache: BERT-Base labels 2x faster than
# at 256 (benchmarks/RESULTS.md); accelerators want large batches.
CPU_BATCH, ACCELERATOR_BATCH = 32, 256
# One batch at a time keeps about 1.3 of 2 CPU cores busy: many of BERT's ops (attention's
# small matmuls, which oneDNN runs on one thread, the elementwise ops) use one core. A second
# batch in flight fills the other: 1.5x labeling on 2 cores (benchmarks/RESULTS.md).
CPU_IN_FLIGHT = 2
# A generous bound on a record's size on disk (text, logits, framing), for the free-space check.
BYTES_PER_RECORD = 2048


def default_batch_size() -> int:
    """The labeling batch when the config leaves it at 0: sized for the device."""
    return ACCELERATOR_BATCH if distribute.accelerated() else CPU_BATCH


def default_in_flight() -> int:
    """How many batches the teacher runs at once: two on a CPU, one where the batch is
    already split across replicas or runs on an accelerator."""
    one_replica = tf.distribute.get_strategy().num_replicas_in_sync == 1
    return CPU_IN_FLIGHT if one_replica and not distribute.accelerated() else 1


def shard_windows(ds: tf.data.Dataset, slices: list[tuple[int, int]], window: int) -> tf.data.Dataset:
    """Batches of at most `window` examples of the `slices` (start, count), in one pass.

    Windows start at each slice's start, so a shard's windows (hence its batches
    and bytes) do not depend on which other shards this worker writes; the
    source is read once, however many shards there are.
    """
    starts = tf.constant([s for s, _ in slices], tf.int64)
    counts = tf.constant([c for _, c in slices], tf.int64)
    per_slice = max(-(-c // window) for _, c in slices)

    def slice_of(i):
        return tf.searchsorted(starts, [i], side="right", out_type=tf.int64)[0] - 1

    def wanted(i, _):
        j = tf.maximum(slice_of(i), 0)
        return tf.logical_and(i >= starts[j], i < starts[j] + counts[j])

    def key(i, _):
        j = slice_of(i)
        return j * per_slice + (i - starts[j]) // window

    def size(k):  # Exactly the window's size, so each window is emitted as soon as it is full.
        j, w = k // per_slice, k % per_slice
        return tf.minimum(tf.constant(window, tf.int64), counts[j] - w * window)

    return (ds.enumerate().filter(wanted)
            .group_by_window(key, lambda _, group: group.batch(window), window_size_func=size)
            .map(lambda _, batch: batch))


def window_sizes(slices: list[tuple[int, int]], window: int) -> list[int]:
    """The sizes of `shard_windows`' windows, in order."""
    return [min(window, count - w) for _, count in slices for w in range(0, count, window)]


def sorted_batches(windows: tf.data.Dataset, packer: text.Packer, batch_size: int) -> tf.data.Dataset:
    """Each window tokenized, sorted by word pieces (`text.sorted_by_length`, as training
    sorts) and cut into batches, each padded to its own longest; raw text and each example's
    `position` in its window are kept."""
    multiple = text.pad_multiple(jit_compile=False)

    def cut(window):
        return tf.data.Dataset.from_tensor_slices(window).batch(batch_size).map(
            lambda batch: text.cut_to_longest(batch, multiple))

    def by_length(window):
        return text.sorted_by_length(window, lambda w: packer(w, multiple=multiple))

    return (windows.map(by_length, num_parallel_calls=tf.data.AUTOTUNE).flat_map(cut)
            .prefetch(2))


class _BusyClock:
    """Adds to `seconds[k]` the wall time during which at least one call runs (calls overlap
    when batches do)."""

    def __init__(self, seconds: list[float], k: int):
        self._seconds, self._k = seconds, k
        self._running, self._since = 0, 0.0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def timing(self):
        with self._lock:
            if not self._running:
                self._since = time.perf_counter()
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    self._seconds[self._k] += time.perf_counter() - self._since


def ordered_in_flight(fn, items, depth: int):
    """`fn(item)` for each item, in order, with up to `depth` calls running at once."""
    if depth <= 1:
        yield from map(fn, items)
        return
    with futures.ThreadPoolExecutor(depth) as pool:
        running = collections.deque()
        for item in items:
            running.append(pool.submit(fn, item))
            if len(running) == depth:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


def labeled_windows(batches, sizes: list[int], members: list, seconds: list[float],
                    in_flight: int = 1):
    """Runs every member on each batch, `in_flight` batches at once; yields each window in
    its original order as (fields as numpy, [members' outputs]). `seconds[k]` adds up the
    wall time during which member k ran."""
    clocks = [_BusyClock(seconds, k) for k in range(len(members))]

    def label(batch):
        inputs = {n: batch[n] for n in encoders.INPUT_NAMES}
        outputs = []
        for member, clock in zip(members, clocks):
            with clock.timing():
                outputs.append(member(inputs).numpy())
        return ({k: v.numpy() for k, v in batch.items()
                 if k in ("id", "text_a", "text_b", "label", "position")}, outputs)

    labeled = ordered_in_flight(label, batches, in_flight)
    with contextlib.closing(labeled):  # Closing waits for the batches still running.
        for size in sizes:
            parts, got = [], 0
            while got < size:
                parts.append(next(labeled))
                got += len(parts[-1][1][0])
            order = np.argsort(np.concatenate([p["position"] for p, _ in parts]))
            fields = {k: np.concatenate([p[k] for p, _ in parts])[order] for k in parts[0][0]}
            outputs = [np.concatenate([o[k] for _, o in parts])[order]
                       for k in range(len(members))]
            yield fields, outputs


def producer(cfg: config_lib.Config, teacher: dict, source: data.Source, filters: dict) -> dict:
    """What identifies a store: task, teacher (its stage's done record), tokenizer and
    transfer data, with each source's counts through the filters (`transfer.build`)."""
    task = tasks.get(cfg.task)
    described = {"encoder": cfg.teacher.encoder, "finetuned": cfg.teacher.finetuned,
                 "fingerprint": teacher["fingerprint"],
                 "teacher_split": gate.teacher_split(cfg, task)}  # What the gate graded on.
    members = {}
    if cfg.teacher.ensemble:  # Every member, and how their outputs were combined.
        described = {"fingerprint": teacher["fingerprint"], "combine": cfg.teacher.combine,
                     "teacher_split": gate.teacher_split(cfg, task),
                     "member_weights": ensemble.weights(cfg).tolist(), "members": [
                         {"encoder": m.teacher.encoder, "finetuned": m.teacher.finetuned,
                          "seed": m.seed, "fingerprint": f}
                         for m, f in zip(ensemble.member_configs(cfg), teacher["members"])]}
        if cfg.teacher.member_logits:
            members = {"member_logits": len(cfg.teacher.ensemble)}
    return {
        "task": task.name,
        "task_type": "regression" if task.is_regression else "classification",
        "label_names": list(task.label_names),
        "teacher": described,
        **members,
        "preprocessor": {**text.fingerprint(cfg.teacher.preprocessor, cfg.teacher.lower_case),
                         "seq_length": cfg.teacher.seq_length},
        "precision": cfg.precision,
        "source": {**data.labeled_inputs(cfg.data), "transfer": list(cfg.data.transfer),
                   "max_transfer_examples": cfg.data.max_transfer_examples,
                   "examples": source.total_examples, **filters},
    }


def _complete(store: str) -> bool:
    return os.path.isfile(os.path.join(store, store_lib.MANIFEST)) and bool(
        store_lib.load_manifest(store).get("complete"))


def run(cfg: config_lib.Config, run_dir: str, worker: int = 0, num_workers: int = 1) -> dict:
    """Labels this worker's pending shards; the store's manifest is the stage's bookkeeping
    (shard by shard, since workers share it), so a rerun checks and redoes only what is
    missing or corrupt."""
    task = tasks.get(cfg.task)
    paths = rundir.RunDir(run_dir, cfg)
    if cfg.data.store:
        manifest = store_lib.check(paths.store, expect={"task": task.name})
        print(f"[label] reusing the store {paths.store} ({manifest['examples']} "
              f"examples, teacher {store_lib.teacher_name(manifest)}); skipping")
        return manifest
    teacher = _teacher_record(cfg, paths)  # Before reading any data.
    model = None
    if not _complete(paths.store):  # A finished store was gated when it was made.
        model = _teacher(cfg, run_dir)
        gate.check(cfg, task, model, ensemble.describe(cfg, run_dir))
    source, filters = transfer.build(cfg.data, task)
    writer = store_lib.Writer(paths.store, producer(cfg, teacher, source, filters),
                              source.total_examples, cfg.teacher.shard_size, task.num_outputs,
                              task.is_regression, bytes_per_record=BYTES_PER_RECORD)
    pending = writer.pending(worker, num_workers)
    if not pending:
        print(f"[label] store {paths.store} has all its shards; skipping")
        return writer.manifest
    _write_shards(cfg, task, writer, pending, source, model or _teacher(cfg, run_dir))
    return writer.manifest


def _teacher_record(cfg: config_lib.Config, paths: rundir.RunDir) -> dict:
    """The teacher stage's done record (with each ensemble member's fingerprint)."""
    teacher = rundir.done_record(paths.stage_dir("teacher"))
    if cfg.teacher.ensemble:
        teacher = {**teacher, "members": [
            rundir.done_record(paths.member(k).stage_dir("teacher"))["fingerprint"]
            for k in range(len(cfg.teacher.ensemble))]}
    return teacher


def _write_shards(cfg: config_lib.Config, task: tasks.Task, writer: store_lib.Writer,
                  pending: list[int], source: data.Source, model) -> None:
    """Labels the `pending` shards in one pass over the source, length-sorted within windows."""
    slices = [writer.slice(k) for k in pending]
    todo = sum(count for _, count in slices)
    print(f"[label] {source.total_examples} transfer examples in {len(writer.manifest['shards'])} "
          f"shards; {len(pending)} to write ({todo} examples) into {writer.store}")
    batch_size = cfg.teacher.label_batch_size or default_batch_size()
    window = batch_size * config_lib.SORT_WINDOW
    batches = sorted_batches(shard_windows(source.get_tfdata(), slices, window),
                             text.packer(cfg.teacher, task.is_pair), batch_size)
    seconds = [0.0] * len(model.members)  # Labeling cost per teacher.
    weights = ensemble.weights(cfg) if cfg.teacher.ensemble else None

    def labeled_examples():
        for fields, outputs in labeled_windows(batches, window_sizes(slices, window),
                                               model.members, seconds, default_in_flight()):
            logits = outputs[0] if weights is None else ensemble.combine(
                np.stack(outputs), cfg.teacher.combine, weights, task.is_regression).numpy()
            for i in range(len(logits)):
                example = {k: fields[k][i] for k in ("id", "text_a", "text_b", "label")}
                example["logits"] = logits[i]
                if "member_logits" in writer.manifest:
                    example["member_logits"] = np.stack([o[i] for o in outputs])
                yield example
            bar.update(len(logits))

    bar = tqdm(total=todo, desc="label", unit="ex", dynamic_ncols=True, mininterval=1.0)
    with bar:  # Closed on errors too, so that an error message starts a line of its own.
        stream = labeled_examples()  # One pass over the source for all of this worker's shards.
        for k, (_, count) in zip(pending, slices):
            writer.write_shard(k, itertools.islice(stream, count))
    print("[label] teacher forward passes: " + ", ".join(
        f"{'member ' + str(k) if weights is not None else 'teacher'} {s:.1f} s "
        f"({todo / max(s, 1e-9):,.0f} ex/s)" for k, s in enumerate(seconds)))


def _teacher(cfg: config_lib.Config, run_dir: str):
    """The teacher (or ensemble) as one function, each member split across replicas."""
    return ensemble.load(cfg, run_dir, wrap=distribute.split_batches)
