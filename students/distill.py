"""Stage 3: train the student on the teacher's soft labels (Turc et al. 2019, Sec. 2, Eq. 1).

    distill train CONFIG --output RUN
Reads RUN/soft_labels, writes RUN/student/distill/{model, weights, done.json}.
The loss is `student.loss` at `student.temperature`, mixed with the gold-label
loss by `student.alpha` where the store holds gold labels.
"""
from __future__ import annotations

import os

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)

from distill import artifacts, config as config_lib, losses, models, records, tasks, text, training
from students import init
from students.common import inputs_for, save, stage_dir
from teachers import label


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    task = tasks.get(cfg.task)
    out = stage_dir(run_dir, "distill")
    store = label.store_path(cfg, run_dir)
    manifest = records.check(store, expect={"task": task.name})
    store_id = artifacts.fingerprint([s["sha256"] for s in manifest["shards"]])
    inputs = inputs_for(cfg, "distill", {"store": store_id})
    done = artifacts.begin(out, inputs)
    if done:
        print(f"[distill] complete in {out}; skipping")
        return done

    dataset, manifest = records.read(store, verify_checksums=False)  # Checked just above.
    print(f"[distill] {cfg.student.encoder} ({cfg.student.init}) on {manifest['examples']} soft "
          f"labels from {store} (teacher {manifest['teacher']['encoder']})")
    model = init.build_student(cfg, task)
    encoder = text.Encoder(text.load(cfg.student.preprocessor, cfg.student.lower_case),
                           cfg.student.seq_length, task.is_pair)
    schedule = cfg.student.distill

    def make_dataset(epoch):
        return training.batches(dataset, encoder, schedule.batch_size,
                                shuffle_seed=cfg.seed * 1000 + epoch,
                                sort_window=schedule.sort_window)

    def loss_fn(logits, batch):
        return losses.total(logits, batch["logits"], batch["label"], loss=cfg.student.loss,
                            temperature=cfg.student.temperature, alpha=cfg.student.alpha,
                            regression=task.is_regression)

    summary = training.fit(model, make_dataset, manifest["examples"], loss_fn, schedule,
                           os.path.join(out, "train"), desc="distill")
    meta = {"task": task.name, "encoder": cfg.student.encoder, "init": cfg.student.init,
            "params": models.count_params(model), "transfer_examples": manifest["examples"]}
    save(model, out, meta)
    return artifacts.finish(out, inputs, {**summary, **meta})
