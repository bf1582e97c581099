"""Stage 3: train the student on the teacher's soft labels (Turc et al. 2019, Sec. 2, Eq. 1).

    distill distill CONFIG --output RUN
Reads RUN/store, writes RUN/student/distill/{model, weights, done.json}.
The loss is `student.distill.loss` at `student.distill.temperature`, mixed with
the gold-label loss by `student.distill.alpha` where the store holds gold labels.
"""
from __future__ import annotations

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)

from distill import config as config_lib, losses, models, rundir, store, tasks, text, training
from distill.errors import UserError
from students import model as student_model


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    task = tasks.get(cfg.task)
    paths = rundir.RunDir(run_dir, cfg)
    manifest = store.check(paths.store, expect={"task": task.name})
    store_id = rundir.fingerprint([s["sha256"] for s in manifest["shards"]])
    sample = cfg.data.store_sample
    if sample and sample > manifest["examples"]:
        raise UserError(f"data.store_sample: {sample} examples asked of the store {paths.store}, "
                        f"which holds {manifest['examples']}; expected at most that many.")
    upstream = {"store": store_id, **({"store_sample": sample} if sample else {})}
    inputs = student_model.inputs(cfg, "distill", upstream)
    kd = cfg.student.distill
    examples = sample or manifest["examples"]

    def work() -> dict:
        keep = store.subsample_mask(manifest["examples"], sample, cfg.seed) if sample else None
        print(f"[distill] {cfg.student.encoder} ({cfg.student.init}) on {examples} "
              f"soft labels from {paths.store} (teacher {store.teacher_name(manifest)})")
        model = student_model.build(cfg, task, "distill")
        packer = text.packer(cfg.student, task.is_pair)

        def make_dataset(epoch):  # Each epoch a uniform mix of the whole store (distill/mixing.py).
            seed = training.epoch_seed(cfg.seed, epoch)
            return training.batches(store.read_mixed(paths.store, manifest, seed, keep), packer,
                                    kd.batch_size, shuffle_seed=seed, sort_window=kd.sort_window,
                                    multiple=text.pad_multiple(kd.jit_compile))

        def loss_fn(logits, batch):
            return losses.total(logits, batch["logits"], batch["label"], loss=kd.loss,
                                temperature=kd.temperature, alpha=kd.alpha,
                                regression=task.is_regression)

        summary = training.fit(model, make_dataset, examples, loss_fn, kd,
                               paths.workdir("distill"), desc="distill",
                               evaluate=student_model.epoch_scorer(cfg, task, model))
        meta = {"task": task.name, "encoder": cfg.student.encoder, "init": cfg.student.init,
                "params": models.count_params(model), "transfer_examples": examples}
        student_model.save(model, paths.model("distill"), paths.weights("distill"), meta)
        return {**summary, **meta}

    return rundir.stage("distill", paths.stage_dir("distill"), inputs, work)
