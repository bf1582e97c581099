"""Stage 2: the teacher labels the transfer data D_T into the soft-label store.

    distill label CONFIG --output RUN [--worker W --num-workers N]
Writes RUN/soft_labels/ (see distill/records.py and DESIGN.md). Examples are
tokenized in the tf.data pipeline and sorted by length within windows, so the
teacher never pays for padding; the store keeps the input order. Shards are
written whole or not at all, so a rerun after a crash redoes only the missing
ones; worker w of N writes shards k = w (mod N).
"""
from __future__ import annotations

import os

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from distill import artifacts, config as config_lib, data, encoders, models, records, tasks, text
from teachers import finetune


def store_path(cfg: config_lib.Config, run_dir: str) -> str:
    """The run's own store, or the shared one that `data.soft_labels` names."""
    return cfg.data.soft_labels or os.path.join(run_dir, "soft_labels")


WINDOW_BATCHES = 16  # Examples are sorted by length within windows of 16 batches.


def encoded_windows(ds: tf.data.Dataset, encoder: text.Encoder, batch_size: int):
    """Windows of examples, tokenized in the input pipeline, as numpy dicts (raw text kept)."""
    def encode(batch):
        return {**batch, **encoder(batch)}

    ds = ds.batch(batch_size * WINDOW_BATCHES).map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    for window in ds.prefetch(2):
        yield {k: v.numpy() for k, v in window.items()}


def bucketed_logits(fn, window: dict, batch_size: int, multiple: int = 8) -> np.ndarray:
    """Runs `fn` on length-sorted batches of `window`; returns logits in the window's order.

    Sorting within the window makes each batch's examples about equally long, so
    a batch pads to little more than its own length (rounded up to `multiple`,
    which bounds the number of distinct shapes); the order is then restored.
    """
    lengths = window["input_mask"].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    out = None
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        width = min(window["input_mask"].shape[1], -(-int(lengths[idx].max()) // multiple) * multiple)
        batch = {n: tf.constant(window[n][idx, :width]) for n in encoders.INPUT_NAMES}
        logits = fn(batch).numpy()
        if out is None:
            out = np.empty((len(order), logits.shape[1]), np.float32)
        out[idx] = logits
    return out


def producer(cfg: config_lib.Config, run_dir: str, source: data.Source) -> dict:
    """What identifies a store: task, teacher, tokenizer and transfer data."""
    task = tasks.get(cfg.task)
    teacher = artifacts.done_record(os.path.join(run_dir, "teacher"))
    return {
        "task": task.name,
        "task_type": "regression" if task.is_regression else "classification",
        "label_names": list(task.label_names),
        "teacher": {"encoder": cfg.teacher.encoder, "finetuned": cfg.teacher.finetuned,
                    "fingerprint": teacher["fingerprint"]},
        "preprocessor": {**text.fingerprint(cfg.teacher.preprocessor, cfg.teacher.lower_case),
                         "seq_length": cfg.teacher.seq_length},
        "source": {"labeled": cfg.data.labeled, "transfer": list(cfg.data.transfer),
                   "max_transfer_examples": cfg.data.max_transfer_examples,
                   "validation_fraction": cfg.data.validation_fraction,
                   "validation_seed": cfg.data.validation_seed, "examples": source.total_examples},
    }


def run(cfg: config_lib.Config, run_dir: str, worker: int = 0, num_workers: int = 1) -> dict:
    task = tasks.get(cfg.task)
    if cfg.data.soft_labels:
        manifest = records.check(cfg.data.soft_labels, expect={"task": task.name})
        print(f"[label] reusing the store {cfg.data.soft_labels} ({manifest['examples']} "
              f"examples, teacher {manifest['teacher']['encoder']}); skipping")
        return manifest
    source = data.transfer(cfg.data, task)
    store = store_path(cfg, run_dir)
    writer = records.Writer(store, producer(cfg, run_dir, source), source.total_examples,
                            cfg.teacher.shard_size, task.num_outputs, task.is_regression)
    pending = writer.pending(worker, num_workers)
    if not pending:
        print(f"[label] store {store} has all its shards; skipping")
        return writer.manifest
    teacher, _ = models.load(finetune.model_path(cfg, run_dir))
    encoder = text.Encoder(text.load(cfg.teacher.preprocessor, cfg.teacher.lower_case),
                           cfg.teacher.seq_length, task.is_pair)
    todo = sum(writer.slice(k)[1] for k in pending)
    print(f"[label] {source.total_examples} transfer examples in {len(writer.manifest['shards'])} "
          f"shards; {len(pending)} to write ({todo} examples) into {store}")
    bar = tqdm(total=todo, desc="label", unit="ex", dynamic_ncols=True, mininterval=1.0)

    def labeled_examples(start, count):
        ds = source.get_tfdata().skip(start).take(count)
        for window in encoded_windows(ds, encoder, cfg.teacher.label_batch_size):
            logits = bucketed_logits(teacher, window, cfg.teacher.label_batch_size)
            for i in range(len(logits)):
                yield {"id": window["id"][i], "text_a": window["text_a"][i],
                       "text_b": window["text_b"][i], "label": window["label"][i],
                       "logits": logits[i]}
            bar.update(len(logits))

    for k in pending:
        writer.write_shard(k, labeled_examples(*writer.slice(k)))
    bar.close()
    return writer.manifest
