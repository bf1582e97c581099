"""The grid's tables and figures (`distill reproduce`, pipelines/paper.py): the small-BERT
release's GLUE table per method, a methods table per task, score against size and, with
transfer sizes, score against transfer-set size; each table as Markdown and CSV.

    distill reproduce configs/paper/pd_vs_baselines.yaml --output runs/paper  # writes them
"""
from __future__ import annotations

import csv
import io
import os
import statistics

from distill import config as config_lib, metrics, plots, rundir, tasks
from pipelines import published

# Columns of the small-BERT release's GLUE table; MNLI gives two.
GLUE_COLUMNS = [("cola", "validation", "CoLA"), ("sst2", "validation", "SST-2"),
                ("mrpc", "validation", "MRPC"), ("stsb", "validation", "STS-B"),
                ("qqp", "validation", "QQP"), ("mnli", "validation_matched", "MNLI-m"),
                ("mnli", "validation_mismatched", "MNLI-mm"), ("qnli", "validation", "QNLI"),
                ("rte", "validation", "RTE"), ("wnli", "validation", "WNLI")]



def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _scores(cells: dict, task: str, student: str, method: str, split: str,
            size: int | None = None) -> list[float]:
    """The dev scores over seeds of one (task, student, method, transfer size)."""
    return [c["scores"][split] for k, c in cells.items()
            if (k.task, k.student, k.method, k.size) == (task, student, method, size)
            and c["status"] == "done" and split in c["scores"]]


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


def write_tables(cfg: config_lib.Config, cells: dict, output: str, baselines: dict,
                 teachers: dict, store_sizes: dict, distilling: set[str]) -> dict:
    """GLUE tables per method, method-comparison tables per task, size plots and, with
    transfer sizes, the transfer-size tables and plots.

    Args:
      baselines: task -> {dev split: the majority-class score} (`majority_scores`).
      teachers: task -> {dev split: the shared teacher's score}.
      store_sizes: task -> examples in its store (the whole transfer set).
      distilling: the methods that distil (read the store).
    """
    grid = cfg.grid
    names = list(dict.fromkeys(k.student for k in cells))
    selection = ""
    if grid.search:
        selection = (" Each cell's hyperparameters were selected by a search on the split "
                     "carved from train; dev was scored once per cell, for "
                     + ("the selected setting trained again on all of train (grid.refit)."
                        if grid.refit else "the selected trial (trained on the rest of train).")
                     + " cell.json says which model it is.")
    references = []
    for label, per_task in (("majority class (dev)", baselines), ("teacher (dev)", teachers)):
        cols = [[per_task[t][split]] if split in per_task.get(t, {}) else []
                for t, split, _ in GLUE_COLUMNS]
        score = _glue_score({(t, split): c for (t, split, _), c in zip(GLUE_COLUMNS, cols)})
        references.append([label, score] + [_mean_std(c) for c in cols])
    for method in grid.methods:
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
               f"nine ran.{selection}")
    for task in grid.tasks:
        split = tasks.get(task).dev_splits[0].name
        rows = [[student] + [_mean_std(_scores(cells, task, student, m, split))
                             for m in grid.methods] for student in names]
        floor = _mean_std([baselines[task][split]]) if task in baselines else "-"
        teacher = _mean_std([teachers[task][split]]) if split in teachers.get(task, {}) else "-"
        _write(os.path.join(output, f"methods_{task}"), ["student"] + grid.methods, rows,
               f"{task}: {split} (dev) score x100, mean ± std over seeds. Always answering the "
               f"majority class scores {floor}; the teacher {teacher}.{selection}")
        _plot_size(cells, task, split, grid.methods, os.path.join(output, f"{task}_vs_size.png"))
        if grid.transfer_sizes and task in store_sizes:
            _transfer_size(cells, task, split, names, grid, store_sizes[task], output, distilling)
    failed = {"/".join(map(str, k)): c["error"] for k, c in cells.items() if c["status"] == "failed"}
    summary = {"cells": len(cells), "done": sum(c["status"] == "done" for c in cells.values()),
               "failed": failed}
    rundir.write_json_atomic(os.path.join(output, "grid.json"), summary)
    print(f"[reproduce] {summary['done']} of {summary['cells']} cells done; tables in {output}")
    return summary


def _transfer_size(cells, task, split, names, grid, whole: int, output: str,
                   distilling: set[str]) -> None:
    """Score against transfer-set size: a table (rows = student x method) and a plot."""
    sizes = sorted(n for n in grid.transfer_sizes if n < whole) + [None]
    header = ["student", "method"] + [f"{n:,}" for n in sizes[:-1]] + [f"all ({whole:,})"]
    rows, lines = [], {}
    for student in names:
        for method in grid.methods:
            distils = method in distilling
            scores = [_scores(cells, task, student, method, split, n if distils else None)
                      for n in sizes]
            rows.append([student, method] + [_mean_std(v) for v in scores])
            label = method if len(names) == 1 else f"{method} {student}"
            lines[label] = (distils, [(n or whole, statistics.mean(v)) for n, v in zip(sizes, scores)
                                      if v])
    _write(os.path.join(output, f"transfer_size_{task}"), header, rows,
           f"{task}: {split} (dev) score x100 against the number of transfer examples the "
           f"students were distilled on (seeded subsamples of one store, no relabeling; mean ± "
           f"std over seeds). Methods without distillation do not read the store: one score.")
    with plots.figure(os.path.join(output, f"{task}_vs_transfer_size.png")) as (_, (ax,)):
        for label, (distils, points) in lines.items():
            if distils and points:
                ax.plot(*zip(*points), marker="o", label=label)
            elif points:  # The same score at every size: a flat reference line.
                ax.axhline(points[-1][1], linestyle="--", color="gray", label=label)
        _finish(ax, "transfer examples", f"{task} {split}")


def _plot_size(cells, task, split, methods, path):
    with plots.figure(path) as (_, (ax,)):
        for method in methods:
            points = {}
            for k, c in cells.items():
                if (k.task, k.method, k.size) == (task, method, None) and c["status"] == "done":
                    points.setdefault(c["params"], []).append(c["scores"][split])
            if points:
                xs = sorted(points)
                ax.plot(xs, [statistics.mean(points[x]) for x in xs], marker="o", label=method)
        _finish(ax, "student parameters", f"{task} {split}")


def _finish(ax, xlabel: str, ylabel: str) -> None:
    """A log-scaled x axis, both labels, and the legend when there are lines to name."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
