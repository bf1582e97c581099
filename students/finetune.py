"""Stage 4 (optional): fine-tune the student on the labeled data D_L (the paper's "PDF").

    distill finetune CONFIG --output RUN
Starts from RUN/student/distill/weights when distillation ran before it (else
from `student.init`, the paper's "PF" baseline); writes RUN/student/finetune/.
"""
from __future__ import annotations

import os

from distill import artifacts, config as config_lib, data, models, supervised, tasks, text
from students import init
from students.common import inputs_for, save, stage_dir


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    task = tasks.get(cfg.task)
    out = stage_dir(run_dir, "finetune")
    start_from, upstream = None, {"labeled": cfg.data.labeled,
                                  "max_train_examples": cfg.data.max_train_examples,
                                  "validation_fraction": cfg.data.validation_fraction,
                                  "validation_seed": cfg.data.validation_seed}
    if "distill" in cfg.student.stages:
        previous = stage_dir(run_dir, "distill")
        upstream["distill"] = artifacts.done_record(previous)["fingerprint"]
        start_from = os.path.join(previous, "weights")
    inputs = inputs_for(cfg, "finetune", upstream)
    done = artifacts.begin(out, inputs)
    if done:
        print(f"[finetune] complete in {out}; skipping")
        return done

    source = data.labeled(cfg.data, task, "train")
    print(f"[finetune] student on {source.total_examples} labeled examples "
          f"(from {'distilled weights' if start_from else cfg.student.init + ' weights'})")
    model = init.build_student(cfg, task, start_from)
    summary = supervised.train_on_labels(
        model, task, source, text.load(cfg.student.preprocessor, cfg.student.lower_case),
        cfg.student.seq_length, cfg.student.finetune, cfg.seed, os.path.join(out, "train"),
        desc="finetune")
    meta = {"task": task.name, "encoder": cfg.student.encoder, "params": models.count_params(model),
            "train_examples": source.total_examples}
    save(model, out, meta)
    return artifacts.finish(out, inputs, {**summary, **meta})
