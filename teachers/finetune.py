"""Stage 1: fine-tune the teacher on the labeled data D_L (or accept one supplied ready).

    distill teacher CONFIG --output RUN
Writes RUN/teacher/model (a classifier SavedModel) and RUN/teacher/done.json.
"""
from __future__ import annotations

from distill import config as config_lib, data, models, rundir, supervised, tasks, text


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    task = tasks.get(cfg.task)
    paths = rundir.RunDir(run_dir, cfg)
    teacher = config_lib.to_dict(cfg)["teacher"]
    for labeling_only in ("label_batch_size", "shard_size", "min_margin"):
        teacher.pop(labeling_only)
    inputs = {"task": task.name, "seed": cfg.seed, "precision": cfg.precision,
              "teacher": teacher, "data": data.labeled_inputs(cfg.data)}

    def work() -> dict:
        if cfg.teacher.finetuned:
            _, meta = models.load(cfg.teacher.finetuned)  # Fails early if it is no classifier.
            print(f"[teacher] using the fine-tuned teacher {cfg.teacher.finetuned}")
            return {"supplied": cfg.teacher.finetuned, **meta}
        print(f"[teacher] fine-tuning {cfg.teacher.encoder} on {task.name} ({cfg.data.labeled})")
        source = data.labeled(cfg.data, task, "train")
        model = models.build(cfg.teacher.encoder, task.num_outputs, cfg.teacher.train.dropout,
                             seed=cfg.seed)
        summary = supervised.train_on_labels(
            model, task, source, text.packer(cfg.teacher, task.is_pair), cfg.teacher.train,
            cfg.seed, paths.workdir("teacher"), desc="teacher")
        meta = {"task": task.name, "encoder": cfg.teacher.encoder,
                "params": models.count_params(model), "train_examples": source.total_examples}
        models.export(model, paths.teacher_model, meta)
        return {**summary, **meta}

    return rundir.stage("teacher", paths.stage_dir("teacher"), inputs, work)
