"""The end-to-end recipe on one GLUE task: every stage of `distill/stages.py`, in order.

    distill run configs/glue/sst2.yaml --output runs/sst2 [--set key=value ...]
Each stage skips itself when its artifacts are complete for the same inputs and
resumes when they are not; see distill/rundir.py.
"""
from __future__ import annotations

import dataclasses
import importlib
import time
from typing import Callable

from distill import config as config_lib, distribute, ensemble, preflight, rundir, stages, store


def runner(name: str) -> Callable:
    """The function the stage table names for stage `name` ("module:function")."""
    module, _, function = stages.get(name).runs.partition(":")
    return getattr(importlib.import_module(module), function)


def run_stage(name: str, cfg: config_lib.Config, run_dir: str, **kwargs):
    """Runs one stage; training stages (and labeling under mirrored/tpu) under the strategy.

    Under `multi_worker`, labeling needs no collectives: each worker labels its
    own shards (`distribute.label_worker`) outside the strategy.
    """
    distribute.configure(cfg)
    strategy = cfg.distribute.strategy
    if stages.get(name).trains or (name == "label" and strategy in ("mirrored", "tpu")):
        strat = distribute.strategy(cfg)
        with strat.scope():
            result = runner(name)(cfg, run_dir, **kwargs)
        distribute.barrier(strat)  # No worker goes on before the chief has written.
        return result
    return runner(name)(cfg, run_dir, **kwargs)


def shared_settings(shared_dir: str, cfg: config_lib.Config) -> dict:
    """The settings that make a run of `cfg` reuse the teacher (each member of an ensemble)
    and the store in `shared_dir`."""
    shared = rundir.RunDir(shared_dir, cfg)
    # A teacher given ready (`teacher.finetuned`, also per member) stays the one runs use.
    if cfg.teacher.ensemble:
        teacher = {"teacher.ensemble": [
            {"finetuned": rundir.RunDir(shared.member(k).root, member).teacher_model}
            for k, member in enumerate(ensemble.member_configs(cfg))]}
    else:
        teacher = {"teacher.finetuned": shared.teacher_model}
    return {**teacher, "data.store": shared.store}


def shared_store(cfg: config_lib.Config, shared_dir: str) -> dict:
    """Makes (or finds done) the one teacher and store that many runs share (sweeps, grids).

    Returns `shared_settings`, the overrides that point a run at them.
    """
    rundir.check_writable(shared_dir)
    run_stage("teacher", cfg, shared_dir)
    run_stage("label", cfg, shared_dir)
    save_config(cfg, shared_dir)
    return shared_settings(shared_dir, cfg)


def save_config(cfg: config_lib.Config, run_dir: str) -> None:
    """Saves the resolved config as RUN/config.yaml once a command has finished."""
    rundir.RunDir(run_dir).save_config(config_lib.to_yaml(cfg))


def with_mlm_student(cfg: config_lib.Config, run_dir: str) -> config_lib.Config:
    """Runs the MLM stage when `student.mlm.data` is set; the student is then its result."""
    if not cfg.student.mlm.data:
        return cfg
    run_stage("mlm", cfg, run_dir)
    student = dataclasses.replace(cfg.student, encoder=rundir.RunDir(run_dir).mlm_encoder)
    return dataclasses.replace(cfg, student=student)


def run(cfg: config_lib.Config, run_dir: str, teacher_results: dict | None = None) -> dict:
    """Runs every stage of the recipe in order; returns the evaluation results.

    Args:
      teacher_results: the shared teacher's dev results, when many runs share it (a grid's
        cells): it is evaluated once, not once per run.
    """
    preflight.check(cfg, run_dir)  # Every input, before any work.
    rundir.check_writable(run_dir)
    timings, results = {}, None
    worker, workers = distribute.label_worker(cfg)
    chief = workers == 1 or distribute.is_chief(distribute.strategy(cfg))
    for name in stages.recipe(cfg.student.stages, mlm=bool(cfg.student.mlm.data)):
        if not stages.get(name).directory and not chief:  # Run-level files: the chief's.
            continue
        t0 = time.time()
        if name == "mlm":
            cfg = with_mlm_student(cfg, run_dir)
        elif name == "label":
            run_stage(name, cfg, run_dir, worker=worker, num_workers=workers)
            if workers > 1:  # The students need the whole store, from every worker.
                store.wait_complete(rundir.RunDir(run_dir, cfg).store)
        elif name == "evaluate":
            results = run_stage(name, cfg, run_dir, teacher=teacher_results)
        else:
            run_stage(name, cfg, run_dir)
        timings[name] = round(time.time() - t0, 1)
    if chief:
        save_config(cfg, run_dir)
    print(f"[run] done in {sum(timings.values()):.0f}s ({timings}); see {run_dir}/report.md")
    return results
