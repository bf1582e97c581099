"""Stage 1: fine-tune the teacher on the labeled data D_L (or accept one supplied ready).

    distill teacher CONFIG --output RUN
Writes RUN/teacher/model (a classifier SavedModel) and RUN/teacher/done.json.
"""
from __future__ import annotations

import json
import os
import shutil

from distill import (config as config_lib, data, ensemble, models, rundir, store as store_lib,
                     supervised, tasks, text)
from teachers import gate


# What a teacher is made from; the rest of the section (batch size and shards of labeling,
# the gate's margin, how an ensemble's members are combined) is labeling's.
TRAINING_FIELDS = ("encoder", "preprocessor", "lower_case", "seq_length", "finetuned", "train",
                   "restarts")


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    task = tasks.get(cfg.task)
    paths = rundir.RunDir(run_dir, cfg)
    if cfg.teacher.ensemble:
        return _ensemble(cfg, run_dir, paths)
    teacher = {k: v for k, v in config_lib.to_dict(cfg)["teacher"].items()
               if k in TRAINING_FIELDS}
    inputs = {"task": task.name, "seed": cfg.seed, "precision": cfg.precision,
              "teacher": teacher, "data": data.labeled_inputs(cfg.data),
              "teacher_split": gate.teacher_split(cfg, task)}

    imported = store_lib.imported_teacher(cfg.data.store)
    if imported:
        inputs["imported"] = imported["sha256"]

    def work() -> dict:
        if imported:  # The labels came from another teacher (`distill import-labels`).
            print(f"[teacher] the store's labels were imported from {imported['imported']} "
                  f"({imported['name']}); no teacher to fine-tune")
            return {"imported": imported["imported"], "name": imported["name"]}
        if cfg.teacher.finetuned:
            # Fails early if it is no classifier; its signature is enough for that (labeling
            # rebuilds it natively when it runs).
            _, meta = models.load(cfg.teacher.finetuned, native=False)
            print(f"[teacher] using the fine-tuned teacher {cfg.teacher.finetuned}")
            return {"supplied": cfg.teacher.finetuned, **meta}
        if cfg.teacher.restarts > 1:
            return _with_restarts(cfg, task, paths)
        model, summary, meta = _train(cfg, task, cfg.seed, paths.workdir("teacher"))
        models.export(model, paths.teacher_model, meta)
        return {**summary, **meta}

    return rundir.stage("teacher", paths.stage_dir("teacher"), inputs, work)


def _train(cfg: config_lib.Config, task: tasks.Task, seed: int, workdir: str) -> tuple:
    """One teacher fine-tuned on D_L with `seed`: (model, training summary, metadata)."""
    print(f"[teacher] fine-tuning {cfg.teacher.encoder} on {task.name} ({cfg.data.labeled}), "
          f"seed {seed}")
    source, _, graded = gate.sources(cfg, task)  # Trains without the split it is graded on.
    model = models.build(cfg.teacher.encoder, task.num_outputs, cfg.teacher.train.dropout,
                         seed=seed, native=cfg.native_encoder, recompute=cfg.recompute)
    summary = supervised.train_on_labels(
        model, task, source, text.packer(cfg.teacher, task.is_pair), cfg.teacher.train, seed,
        workdir, desc="teacher")
    meta = {"task": task.name, "encoder": cfg.teacher.encoder, "seed": seed,
            "params": models.count_params(model), "train_examples": source.total_examples,
            "graded_on": graded}
    return model, summary, meta


def _with_restarts(cfg: config_lib.Config, task: tasks.Task, paths: rundir.RunDir) -> dict:
    """`teacher.restarts` teachers (seeds seed, seed+1, ...); the best on the gate's split is
    exported. Each restart is recorded as it finishes, so a crash loses at most the one
    running; its checkpoints are removed once it is scored."""
    done = []
    if os.path.isfile(paths.restarts):
        with open(paths.restarts) as f:
            done = json.load(f)
    for i in range(len(done), cfg.teacher.restarts):
        workdir = paths.workdir("teacher", restart=i)
        model, summary, meta = _train(cfg, task, cfg.seed + i, workdir)
        scored = gate.scores(cfg, task, lambda x: model(x, training=False))
        print(f"[teacher] restart {i + 1} of {cfg.teacher.restarts} (seed {cfg.seed + i}): "
              f"{scored['teacher']:.4f} on the {scored['split']} split "
              f"(baseline {scored['baseline']:.4f})")
        if all(scored["teacher"] > r["score"] for r in done):
            models.export(model, paths.teacher_model, meta)
        done.append({"restart": i, "seed": cfg.seed + i, "score": scored["teacher"],
                     "split": scored["split"], "baseline": scored["baseline"], **summary})
        rundir.write_json_atomic(paths.restarts, done)
        shutil.rmtree(os.path.dirname(workdir), ignore_errors=True)
    best = max(done, key=lambda r: r["score"])
    print(f"[teacher] kept restart {best['restart'] + 1} (seed {best['seed']}): "
          f"{best['score']:.4f}; all: " + ", ".join(f"{r['score']:.4f}" for r in done))
    meta = models.metadata(paths.teacher_model)  # The kept restart's, read without loading it.
    return {**{k: v for k, v in best.items() if k not in ("restart", "score", "split", "baseline")},
            **meta, "restarts": done, "kept_restart": best["restart"]}


def _ensemble(cfg: config_lib.Config, run_dir: str, paths: rundir.RunDir) -> dict:
    """Every member's teacher stage in its own directory, then the ensemble's record."""
    records = [run(member, paths.member(k).root)
               for k, member in enumerate(ensemble.member_configs(cfg))]
    inputs = {"task": cfg.task, "members": [r["fingerprint"] for r in records]}

    def work() -> dict:
        summaries = [r["summary"] for r in records]
        return {"members": summaries, "params": sum(s.get("params", 0) for s in summaries),
                "seconds": round(sum(s.get("seconds", 0) for s in summaries), 1),
                "steps": sum(s.get("steps", 0) for s in summaries)}

    return rundir.stage("teacher", paths.stage_dir("teacher"), inputs, work)
