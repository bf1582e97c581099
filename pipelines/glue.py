"""The end-to-end recipe on one GLUE task: teacher, label, student stages, evaluate, report.

    distill run configs/glue/sst2.yaml --output runs/sst2 [--set key=value ...]
Each stage skips itself when its artifacts are complete for the same inputs and
resumes when they are not; see distill/artifacts.py.
"""
from __future__ import annotations

import dataclasses
import os
import time

from distill import config as config_lib
from pipelines import evaluate, report
from students import distill as student_distill, finetune as student_finetune, mlm
from teachers import finetune as teacher_finetune, label

STAGES = {
    "teacher": teacher_finetune.run,
    "label": label.run,
    "distill": student_distill.run,
    "finetune": student_finetune.run,
    "evaluate": evaluate.run,
    "report": report.run,
}


def prepare(cfg: config_lib.Config, run_dir: str) -> config_lib.Config:
    """Applies `runlocal`, creates the run directory and saves the resolved config in it."""
    cfg = config_lib.smoke(cfg)
    os.makedirs(run_dir, exist_ok=True)
    config_lib.dump(cfg, os.path.join(run_dir, "config.yaml"))
    return cfg


def with_mlm_student(cfg: config_lib.Config, run_dir: str) -> config_lib.Config:
    """Runs the MLM stage when `student.mlm.data` is set; the student is then its result."""
    if not cfg.student.mlm.data:
        return cfg
    mlm.run(cfg, run_dir)
    student = dataclasses.replace(cfg.student, encoder=mlm.encoder_path(run_dir))
    return dataclasses.replace(cfg, student=student)


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    """Runs every stage of the recipe in order; returns the evaluation results."""
    cfg = with_mlm_student(prepare(cfg, run_dir), run_dir)
    timings = {}
    for name in ["teacher", "label", *cfg.student.stages, "evaluate", "report"]:
        t0 = time.time()
        result = STAGES[name](cfg, run_dir)
        timings[name] = round(time.time() - t0, 1)
        if name == "evaluate":
            results = result
    print(f"[run] done in {sum(timings.values()):.0f}s ({timings}); see {run_dir}/report.md")
    return results
