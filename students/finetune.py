"""Stage 4 (optional): fine-tune the student on the labeled data D_L (the paper's "PDF").

    distill finetune CONFIG --output RUN
Starts from RUN/student/distill/weights when distillation ran before it (else
from `student.init`, the paper's "PF" baseline); writes RUN/student/finetune/.
"""
from __future__ import annotations

from distill import config as config_lib, data, models, rundir, supervised, tasks, text
from students import model as student_model


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    task = tasks.get(cfg.task)
    paths = rundir.RunDir(run_dir, cfg)
    start_from, upstream = None, data.labeled_inputs(cfg.data)
    if "distill" in cfg.student.stages:
        upstream["distill"] = rundir.done_record(paths.stage_dir("distill"))["fingerprint"]
        start_from = paths.weights("distill")
    inputs = student_model.inputs(cfg, "finetune", upstream)

    def work() -> dict:
        source = data.labeled(cfg.data, task, "train")
        print(f"[finetune] student on {source.total_examples} labeled examples "
              f"(from {'distilled weights' if start_from else cfg.student.init + ' weights'})")
        model = student_model.build(cfg, task, "finetune", start_from)
        summary = supervised.train_on_labels(
            model, task, source, text.packer(cfg.student, task.is_pair), cfg.student.finetune,
            cfg.seed, paths.workdir("finetune"), desc="finetune",
            evaluate=student_model.epoch_scorer(cfg, task, model))
        meta = {"task": task.name, "encoder": cfg.student.encoder,
                "params": models.count_params(model), "train_examples": source.total_examples}
        student_model.save(model, paths.model("finetune"), paths.weights("finetune"), meta)
        return {**summary, **meta}

    return rundir.stage("finetune", paths.stage_dir("finetune"), inputs, work)
