"""Stage 1: fine-tune the teacher on the labeled data D_L (or accept one supplied ready).

    distill teacher CONFIG --output RUN
Writes RUN/teacher/model (a classifier SavedModel) and RUN/teacher/done.json.
"""
from __future__ import annotations

import os

from distill import artifacts, config as config_lib, data, models, supervised, tasks, text


def model_path(cfg: config_lib.Config, run_dir: str) -> str:
    return cfg.teacher.finetuned or os.path.join(run_dir, "teacher", "model")


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    stage_dir = os.path.join(run_dir, "teacher")
    task = tasks.get(cfg.task)
    inputs = {"task": task.name, "seed": cfg.seed, "precision": cfg.precision,
              "teacher": config_lib.to_dict(cfg)["teacher"],
              "data": {"labeled": cfg.data.labeled, "max_train_examples": cfg.data.max_train_examples,
                       "validation_fraction": cfg.data.validation_fraction,
                       "validation_seed": cfg.data.validation_seed}}
    inputs["teacher"].pop("label_batch_size"), inputs["teacher"].pop("shard_size")
    done = artifacts.begin(stage_dir, inputs)
    if done:
        print(f"[teacher] complete in {stage_dir}; skipping")
        return done
    if cfg.teacher.finetuned:
        _, meta = models.load(cfg.teacher.finetuned)  # Fails early if it is no classifier.
        print(f"[teacher] using the fine-tuned teacher {cfg.teacher.finetuned}")
        return artifacts.finish(stage_dir, inputs, {"supplied": cfg.teacher.finetuned, **meta})

    print(f"[teacher] fine-tuning {cfg.teacher.encoder} on {task.name} ({cfg.data.labeled})")
    source = data.labeled(cfg.data, task, "train")
    preprocessor = text.load(cfg.teacher.preprocessor, cfg.teacher.lower_case)
    model = models.build(cfg.teacher.encoder, task.num_outputs, cfg.teacher.train.dropout,
                         seed=cfg.seed)
    summary = supervised.train_on_labels(
        model, task, source, preprocessor, cfg.teacher.seq_length, cfg.teacher.train, cfg.seed,
        os.path.join(stage_dir, "train"), desc="teacher")
    meta = {"task": task.name, "encoder": cfg.teacher.encoder, "params": models.count_params(model),
            "train_examples": source.total_examples}
    models.export(model, model_path(cfg, run_dir), meta)
    return artifacts.finish(stage_dir, inputs, {**summary, **meta})
