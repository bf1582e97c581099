"""The paper's tables: a grid of students x methods x tasks x seeds.

    distill reproduce configs/paper/pd_vs_baselines.yaml --output runs/paper

Methods (Turc et al. 2019, Sec. 3 and 6): PF, pre-training + fine-tuning on the
labels; D, distillation from a random initialisation; PD, pre-trained
distillation; PDF, PD followed by fine-tuning; TT, fine-tuning a truncated
teacher (students that name a `truncated_encoder`, made by `distill convert
--layers K`). Every cell is its own run directory under OUTPUT/cells and reuses
its task's one teacher and soft-label store (OUTPUT/shared/<task>); finished
cells are skipped on a rerun, and a failed cell is recorded and does not stop
the rest. Writes OUTPUT/glue_<method>.{md,csv} (the small-BERT release's GLUE
table), OUTPUT/methods_<task>.{md,csv} (rows = students, columns = methods) and
OUTPUT/<task>_vs_size.png (metric against parameters, one line per method).
"""
from __future__ import annotations

import csv
import io
import json
import os
import statistics
import traceback

from distill import (config as config_lib, convert, data, encoders, metrics, preflight, rundir,
                     tasks)
from distill.errors import UserError
from pipelines import demo, glue, published
from students import presets

METHODS = {  # method -> (student.init, student.stages, uses the truncated teacher)
    "PF": ("pretrained", ["finetune"], False),
    "D": ("random", ["distill"], False),
    "PD": ("pretrained", ["distill"], False),
    "PDF": ("pretrained", ["distill", "finetune"], False),
    "TT": ("pretrained", ["finetune"], True),
}
# Columns of the small-BERT release's GLUE table; MNLI gives two.
GLUE_COLUMNS = [("cola", "validation", "CoLA"), ("sst2", "validation", "SST-2"),
                ("mrpc", "validation", "MRPC"), ("stsb", "validation", "STS-B"),
                ("qqp", "validation", "QQP"), ("mnli", "validation_matched", "MNLI-m"),
                ("mnli", "validation_mismatched", "MNLI-mm"), ("qnli", "validation", "QNLI"),
                ("rte", "validation", "RTE"), ("wnli", "validation", "WNLI")]


def students(grid: config_lib.GridConfig, assets: str | None) -> list[dict]:
    """The grid's students: all 24 small BERTs, or the config's list."""
    if grid.students == "small_bert_24":
        return [{"name": presets.name(l, h), "encoder": presets.handle(l, h)}
                for l in presets.LAYERS for h in presets.HIDDEN]
    if not isinstance(grid.students, list) or not all(
            isinstance(s, dict) and {"name", "encoder"} <= set(s) for s in grid.students):
        raise UserError("grid.students: expected 'small_bert_24' or a list of {name, encoder"
                        f"[, truncated_encoder]}}; received {grid.students!r}.")
    return [{k: v.format(assets=assets) if isinstance(v, str) else v for k, v in s.items()}
            for s in grid.students]


def demo_assets(root: str) -> list[str]:
    """The demo's data and encoders, plus a smaller student and a 1-layer truncated teacher."""
    paths = demo.asset_paths(root) if demo.assets_complete(root) else demo.make_assets(root)
    small, truncated = os.path.join(root, "student_small"), os.path.join(root, "teacher_L1")
    if not os.path.isfile(os.path.join(truncated, "saved_model.pb")):
        with open(paths["vocab"]) as f:
            size = len(f.read().splitlines())
        encoders.export_random(small, encoders.BertConfig(
            num_layers=1, hidden_size=32, num_heads=2, vocab_size=size, max_position=64),
            paths["vocab"], seed=2)
        convert.truncate(paths["teacher"], 1, truncated)
    return demo.overrides(paths)


def cell_overrides(student: dict, method: str, seed: int) -> list[str] | None:
    init, stages, truncated = METHODS[method]
    if truncated and "truncated_encoder" not in student:
        return None  # No converter-made truncated teacher for this student.
    encoder = student["truncated_encoder"] if truncated else student["encoder"]
    return [f"seed={seed}", f"student.encoder={encoder}", f"student.init={init}",
            f"student.stages={stages!r}"]


def run(cfg: config_lib.Config, output: str) -> dict:
    grid = cfg.grid
    bad = [m for m in grid.methods if m not in METHODS]
    if bad:
        raise UserError(f"grid.methods: unknown {bad}; expected some of {sorted(METHODS)}.")
    assets, base = None, list(grid.overrides)
    if grid.assets == "demo":
        assets = os.path.join(output, "assets")
        base = demo_assets(assets) + base
    base = [o.format(assets=assets) for o in base]
    configs = {}
    for task in grid.tasks:  # Every task's inputs are checked before any teacher trains.
        task_config = _resolve(grid.task_config.format(task=task))
        configs[task] = task_config, config_lib.load(task_config, base + [f"task={task}"])
        preflight.check(configs[task][1], os.path.join(output, "shared", task))
    grid_students = students(grid, assets)
    cells, baselines = {}, {}
    for task, (task_config, task_cfg) in configs.items():
        baselines[task] = majority_scores(task_cfg)
        shared = os.path.join(output, "shared", task)
        print(f"[reproduce] {task}: teacher and store in {shared}")
        reuse = [f"{k}={v}" for k, v in glue.shared_store(task_cfg, shared).items()]
        for student in grid_students:
            for method in grid.methods:
                for seed in grid.seeds:
                    key = (task, student["name"], method, seed)
                    extra = cell_overrides(student, method, seed)
                    if extra is None:
                        continue
                    cell_dir = os.path.join(output, "cells", task, student["name"], method,
                                            f"seed{seed}")
                    cells[key] = run_cell(task_config, base + [f"task={task}"] + reuse + extra,
                                          cell_dir)
    return write_tables(cfg, cells, output, baselines)


def majority_scores(cfg: config_lib.Config) -> dict[str, float]:
    """Dev score of always answering D_L's majority class (its mean, STS-B), per dev split:
    the floor every student must clear to have learned anything."""
    task = tasks.get(cfg.task)
    train = data.labels(data.labeled(cfg.data, task, "train"), task)
    return {split.name: metrics.majority_baseline(
        task, train, data.labels(data.labeled(cfg.data, task, split.name), task))["score"]
            for split in task.dev_splits}


def _resolve(path: str) -> str:
    """A config path as given, or relative to the repository (where configs/ lives)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path)


def run_cell(task_config: str, overrides: list[str], cell_dir: str) -> dict:
    """One cell, skipped when done; a failure is recorded in cell.json, not raised."""
    path = os.path.join(cell_dir, "cell.json")
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f)
        if previous["status"] == "done":
            return previous
    try:
        cfg = config_lib.load(task_config, overrides)
        results = glue.run(cfg, cell_dir)
        paths = rundir.RunDir(cell_dir, cfg)
        params = paths.summary(paths.final_stage)["params"]
        cell = {"status": "done", "params": params,
                **{key: {s: results[role][s]["score"] for s in results[role] if s != "eval_seconds"}
                   for key, role in (("scores", "student"), ("teacher", "teacher"))}}
    except Exception as e:  # One failed cell must not stop the grid.
        cell = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}
        print(f"[reproduce] cell {cell_dir} failed: {cell['error']}")
    rundir.write_json_atomic(path, cell)
    return cell


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _scores(cells: dict, task: str, student: str, method: str, split: str) -> list[float]:
    return [c["scores"][split] for (t, s, m, _), c in cells.items()
            if (t, s, m) == (task, student, method) and c["status"] == "done"
            and split in c["scores"]]


def _glue_score(columns: dict) -> str:
    """The GLUE score (x100) of one row's columns {(task, split): scores over seeds}."""
    per_task = {}
    for task in tasks.TASKS:
        splits = [columns.get((task, s.name)) for s in tasks.get(task).dev_splits]
        if all(splits):
            per_task[task] = metrics.task_score([statistics.mean(v) for v in splits])
    score = metrics.glue_score(per_task)
    return "-" if score is None else f"{100 * score:.1f}"


def _published_rows(names: list[str]) -> list[list[str]]:
    """The release's test rows for the sizes this grid has (student names hold L-k_H-h)."""
    rows = []
    for model, (layers, hidden, score, values) in published.RELEASE_GLUE_TEST.items():
        if any(f"L-{layers}_H-{hidden}" in name for name in names):
            cols = [values[t][1 if name == "MNLI-mm" else 0] if t == "mnli"
                    else metrics.task_score(values[t]) for t, _, name in GLUE_COLUMNS]
            rows.append([f"{model} (published, test)", f"{score:.1f}"] + [f"{v:.1f}" for v in cols])
    return rows


def _write(path: str, header: list[str], rows: list[list[str]], caption: str = "") -> None:
    table = io.StringIO()
    csv.writer(table).writerows([header, *rows])
    rundir.write_text_atomic(path + ".csv", table.getvalue())
    markdown = ([caption, ""] if caption else []) + [
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    markdown += ["| " + " | ".join(r) + " |" for r in rows]
    rundir.write_text_atomic(path + ".md", "\n".join(markdown) + "\n")


def write_tables(cfg: config_lib.Config, cells: dict, output: str, baselines: dict) -> dict:
    """GLUE tables per method, method-comparison tables per task, and size plots.

    Args:
      baselines: task -> {dev split: the majority-class score} (`majority_scores`).
    """
    names = list(dict.fromkeys(s for _, s, _, _ in cells))
    grid_tasks = cfg.grid.tasks
    teachers = {}  # task -> {split: score}: every cell of a task has the same teacher.
    for (task, _, _, _), cell in cells.items():
        if cell["status"] == "done" and "teacher" in cell:
            teachers.setdefault(task, cell["teacher"])
    references = []
    for label, per_task in (("majority class (dev)", baselines), ("teacher (dev)", teachers)):
        cols = [[per_task[t][split]] if split in per_task.get(t, {}) else []
                for t, split, _ in GLUE_COLUMNS]
        score = _glue_score({(t, split): c for (t, split, _), c in zip(GLUE_COLUMNS, cols)})
        references.append([label, score] + [_mean_std(c) for c in cols])
    for method in cfg.grid.methods:
        rows = []
        for student in names:
            cols = [_scores(cells, t, student, method, split) for t, split, _ in GLUE_COLUMNS]
            score = _glue_score({(t, split): c for (t, split, _), c in zip(GLUE_COLUMNS, cols)})
            rows.append([f"{student} (ours, dev)", score] + [_mean_std(c) for c in cols])
        rows += references + _published_rows(names)
        _write(os.path.join(output, f"glue_{method}"), ["model", "Score"] +
               [name for _, _, name in GLUE_COLUMNS], rows,
               f"GLUE, method {method}: our rows are dev-set scores (x100, mean ± std over "
               f"seeds); published rows are test-server scores. Score is the leaderboard's: the "
               f"mean of the nine tasks' scores (MNLI: the mean of -m and -mm), '-' unless all "
               f"nine ran.")
    for task in grid_tasks:
        split = tasks.get(task).dev_splits[0].name
        rows = [[student] + [_mean_std(_scores(cells, task, student, m, split))
                             for m in cfg.grid.methods] for student in names]
        floor = _mean_std([baselines[task][split]]) if task in baselines else "-"
        teacher = _mean_std([teachers[task][split]]) if split in teachers.get(task, {}) else "-"
        _write(os.path.join(output, f"methods_{task}"), ["student"] + cfg.grid.methods, rows,
               f"{task}: {split} (dev) score x100, mean ± std over seeds. Always answering the "
               f"majority class scores {floor}; the teacher {teacher}.")
        _plot(cells, task, split, cfg.grid.methods, os.path.join(output, f"{task}_vs_size.png"))
    failed = {"/".join(map(str, k)): c["error"] for k, c in cells.items() if c["status"] == "failed"}
    summary = {"cells": len(cells), "done": sum(c["status"] == "done" for c in cells.values()),
               "failed": failed}
    rundir.write_json_atomic(os.path.join(output, "grid.json"), summary)
    print(f"[reproduce] {summary['done']} of {summary['cells']} cells done; tables in {output}")
    return summary


def _plot(cells, task, split, methods, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in methods:
        points = {}
        for (t, _, m, _), c in cells.items():
            if (t, m) == (task, method) and c["status"] == "done":
                points.setdefault(c["params"], []).append(c["scores"][split])
        if points:
            xs = sorted(points)
            ax.plot(xs, [statistics.mean(points[x]) for x in xs], marker="o", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("student parameters")
    ax.set_ylabel(f"{task} {split}")
    ax.legend()
    fig.tight_layout()
    rundir.write_file_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
