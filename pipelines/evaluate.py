"""Stage 5: dev-set metrics of teacher and student, and the student's GLUE test predictions.

    distill evaluate CONFIG --output RUN
Writes RUN/metrics.json, RUN/predictions/<role>-<split>.npz (ids, labels,
logits) and RUN/submission/<GLUE file>.tsv (header
"index<TAB>prediction", as the GLUE server expects). Test splits whose files
are absent (a GLUE directory without test.tsv) are skipped with a note.
"""
from __future__ import annotations

import os
import time

import numpy as np

from distill import config as config_lib, data, metrics, models, records, tasks, text, training
from distill.errors import UserError
from students.common import stage_dir
from teachers import finetune


def student_model_path(cfg: config_lib.Config, run_dir: str) -> str:
    return os.path.join(stage_dir(run_dir, cfg.student.stages[-1]), "model")


def _predict(cfg, task, model_path, preprocessor, lower_case, seq_length, split):
    fn, _ = models.load(model_path)
    encoder = text.Encoder(text.load(preprocessor, lower_case), seq_length, task.is_pair)
    source = data.labeled(cfg.data, task, split)
    return models.predict(fn, training.batches(source.get_tfdata(), encoder, cfg.eval_batch_size))


def submission_rows(task: tasks.Task, result: dict) -> list[str]:
    """GLUE leaderboard lines: label names for NLI tasks, indices or scores otherwise."""
    preds = metrics.predictions(task, result["logits"])
    rows = ["index\tprediction"]
    for row_id, p in zip(result["id"], preds):
        index = row_id.decode().rsplit("/", 1)[-1]
        if task.is_regression:
            value = f"{float(p):.3f}"
        else:
            value = str(int(p)) if task.numeric_tsv_labels else task.label_names[int(p)]
        rows.append(f"{index}\t{value}")
    return rows


def _roles(cfg: config_lib.Config, run_dir: str) -> dict:
    """role -> (classifier SavedModel, preprocessor, lower_case, seq_length)."""
    return {
        "teacher": (finetune.model_path(cfg, run_dir), cfg.teacher.preprocessor,
                    cfg.teacher.lower_case, cfg.teacher.seq_length),
        "student": (student_model_path(cfg, run_dir), cfg.student.preprocessor,
                    cfg.student.lower_case, cfg.student.seq_length),
    }


def score(cfg: config_lib.Config, run_dir: str, role: str, split: str) -> dict:
    """The task's metrics of `role` ("teacher" or "student") on `split` (e.g. "heldout")."""
    task = tasks.get(cfg.task)
    out = _predict(cfg, task, *_roles(cfg, run_dir)[role], split)
    return {**metrics.compute(task, out["label"], out["logits"]), "examples": int(len(out["id"]))}


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    task = tasks.get(cfg.task)
    roles = _roles(cfg, run_dir)
    results = {"task": task.name, "metrics": task.metrics}
    for role, args in roles.items():
        t0 = time.time()
        results[role] = {}
        for split in task.dev_splits:
            out = _predict(cfg, task, *args, split.name)
            results[role][split.name] = {**metrics.compute(task, out["label"], out["logits"]),
                                         "examples": int(len(out["id"]))}
            _save_predictions(run_dir, f"{role}-{split.name}", out)
        results[role]["eval_seconds"] = round(time.time() - t0, 2)
        print(f"[evaluate] {role}: " + ", ".join(
            f"{s.name} {results[role][s.name]['score']:.4f}" for s in task.dev_splits))

    submission = os.path.join(run_dir, "submission")
    results["submission"] = {}
    for split in task.test_splits:
        try:
            out = _predict(cfg, task, *roles["student"], split.name)
        except UserError as e:
            print(f"[evaluate] no test predictions for {split.name}: {e}")
            continue
        os.makedirs(submission, exist_ok=True)
        path = os.path.join(submission, split.submission)
        records.write_text_atomic(path, "\n".join(submission_rows(task, out)) + "\n")
        results["submission"][split.name] = {"file": path, "examples": int(len(out["id"]))}
    records.write_json_atomic(os.path.join(run_dir, "metrics.json"), _plain(results))
    return results


def _save_predictions(run_dir: str, name: str, out: dict) -> None:
    """RUN/predictions/NAME.npz: ids, gold labels and logits, in dev-set order."""
    directory = os.path.join(run_dir, "predictions")
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f"{name}.tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, os.path.join(directory, f"{name}.npz"))


def _plain(obj):
    """numpy scalars -> Python, for JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj.item() if isinstance(obj, np.generic) else obj
