"""Stage 2: the teacher labels the transfer data D_T into the soft-label store.

    distill label CONFIG --output RUN [--worker W --num-workers N]
Writes RUN/soft_labels/ (see distill/records.py and DESIGN.md). Shards are
written whole or not at all, so a rerun after a crash redoes only the missing
ones; worker w of N writes shards k = w (mod N).
"""
from __future__ import annotations

import os

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
from tqdm import tqdm

from distill import artifacts, config as config_lib, data, models, records, tasks, text
from teachers import finetune


def store_path(cfg: config_lib.Config, run_dir: str) -> str:
    """The run's own store, or the shared one that `data.soft_labels` names."""
    return cfg.data.soft_labels or os.path.join(run_dir, "soft_labels")


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
        ds = source.get_tfdata().skip(start).take(count).batch(cfg.teacher.label_batch_size)
        ds = ds.map(lambda b: (b, encoder(b)), num_parallel_calls=tf.data.AUTOTUNE)
        for raw, inputs in ds.prefetch(tf.data.AUTOTUNE):
            logits = teacher(inputs).numpy()
            raw = {k: v.numpy() for k, v in raw.items()}
            for i in range(len(logits)):
                yield {"id": raw["id"][i], "text_a": raw["text_a"][i], "text_b": raw["text_b"][i],
                       "label": raw["label"][i], "logits": logits[i]}
            bar.update(len(logits))

    for k in pending:
        writer.write_shard(k, labeled_examples(*writer.slice(k)))
    bar.close()
    return writer.manifest
