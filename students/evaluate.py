"""Stage 5: dev-set metrics of teacher and student, and the student's GLUE test predictions.

    distill evaluate CONFIG --output RUN
Writes RUN/metrics.json, RUN/predictions/<role>-<split>.npz (ids, labels,
logits) and RUN/submission/<GLUE file>.tsv (header
"index<TAB>prediction", as the GLUE server expects). Test splits whose files
are absent (a GLUE directory without test.tsv) are skipped with a note.
"""
from __future__ import annotations

import time

import numpy as np

from distill import (config as config_lib, data, distribute, ensemble, metrics, models, rundir,
                     store, tasks, text)
from distill.errors import UserError


def _predict(cfg, task, fn, side, split: str) -> dict:
    """Predictions on `split` of the loaded classifier `fn`, packed as `side` (the teacher or
    student config section) says."""
    return models.predict_source(fn, data.labeled(cfg.data, task, split),
                                 text.packer(side, task.is_pair), cfg.eval_batch_size)


def _scored(cfg, task, fn, side, split: str) -> tuple[dict, dict]:
    """(the task's metrics and example count, the predictions) of `fn` on `split`."""
    out = _predict(cfg, task, fn, side, split)
    return {**metrics.compute(task, out["label"], out["logits"]),
            "top_class_share": metrics.top_class_share(task, out["logits"]),
            "examples": int(len(out["id"]))}, out


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
    """role -> (loads its classifier as `fn(inputs) -> logits`, its config section); the
    teacher may be an ensemble (distill/ensemble.py)."""
    paths = rundir.RunDir(run_dir, cfg)
    return {"teacher": (lambda: ensemble.load(cfg, run_dir), cfg.teacher),
            "student": (lambda: models.load(paths.student_model)[0], cfg.student)}


def score(cfg: config_lib.Config, run_dir: str, role: str, split: str) -> dict:
    """The task's metrics of `role` ("teacher" or "student") on `split` (e.g. "heldout")."""
    load, side = _roles(cfg, run_dir)[role]
    return _scored(cfg, tasks.get(cfg.task), load(), side, split)[0]


def evaluate_role(cfg: config_lib.Config, run_dir: str, role: str) -> dict:
    """`role`'s metrics on every dev split; its predictions go to RUN/predictions. A teacher
    whose labels were imported (`distill import-labels`) has no model here: {"imported"}."""
    imported = store.imported_teacher(cfg.data.store)
    if role == "teacher" and imported:
        return {"imported": imported["name"]}
    task = tasks.get(cfg.task)
    paths = rundir.RunDir(run_dir, cfg)
    t0, results = time.time(), {}
    load, side = _roles(cfg, run_dir)[role]
    fn = load()  # Once for all dev splits (MNLI has two).
    for split in task.dev_splits:
        results[split.name], out = _scored(cfg, task, fn, side, split.name)
        rundir.write_file_atomic(paths.predictions(role, split.name),
                                 lambda tmp: np.savez(tmp, **out))
    results["eval_seconds"] = round(time.time() - t0, 2)
    print(f"[evaluate] {role}: " + ", ".join(
        f"{s.name} {results[s.name]['score']:.4f}" for s in task.dev_splits))
    return results


def run(cfg: config_lib.Config, run_dir: str, teacher: dict | None = None) -> dict:
    """Evaluates teacher and student, writes metrics.json and the test submission.

    Args:
      teacher: the teacher's results when they were computed once for many runs that share
        it (a grid's cells); it is then not evaluated again.
    """
    task = tasks.get(cfg.task)
    paths = rundir.RunDir(run_dir, cfg)
    roles = _roles(cfg, run_dir)
    results = {"task": task.name, "metrics": task.metrics,
               "environment": distribute.environment(cfg),
               "teacher": teacher or evaluate_role(cfg, run_dir, "teacher"),
               "student": evaluate_role(cfg, run_dir, "student")}

    results["submission"] = {}
    load, side = roles["student"]
    student = None
    for split in task.test_splits:
        try:
            student = student or load()
            out = _predict(cfg, task, student, side, split.name)
        except UserError as e:
            print(f"[evaluate] no test predictions for {split.name}: {e}")
            continue
        path = paths.submission(split.submission)
        rundir.write_text_atomic(path, "\n".join(submission_rows(task, out)) + "\n")
        results["submission"][split.name] = {"file": path, "examples": int(len(out["id"]))}
    rundir.write_json_atomic(paths.metrics, plain(results))
    return results


def plain(obj):
    """numpy scalars -> Python, for JSON."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj.item() if isinstance(obj, np.generic) else obj
