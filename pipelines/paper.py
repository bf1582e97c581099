"""The paper's tables: a grid of students x methods x tasks x seeds (x transfer-set sizes).

    distill reproduce configs/paper/pd_vs_baselines.yaml --output runs/paper

Methods are `METHODS` below (README, "Methods"). Every cell is its own run directory
under OUTPUT/cells and reuses its task's one teacher and store (OUTPUT/shared/<task>);
the teacher is evaluated once per task; PDF links PD's distillation of the same student,
seed and transfer size instead of training it again. With `grid.search`, each cell runs
the task config's `sweep` (e.g. the release's batch size x learning rate grid) through
`pipelines/sweep.py`, selecting on the split carved from train and reporting dev for the
selected trial only. `grid.transfer_sizes` adds cells that distil on seeded subsamples of
the store (no relabeling). Finished cells, and finished trials of a search, are skipped on
a rerun; a failed cell is recorded and does not stop the rest. Writes
OUTPUT/glue_<method>.{md,csv} (the small-BERT release's GLUE table),
OUTPUT/methods_<task>.{md,csv} (rows = students, columns = methods),
OUTPUT/<task>_vs_size.png (score against parameters, one line per method) and, with
transfer sizes, OUTPUT/transfer_size_<task>.{md,csv} and OUTPUT/<task>_vs_transfer_size.png.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
import typing

from distill import config as config_lib, data, metrics, preflight, rundir, store, tasks
from distill.errors import PartialFailure, UserError
from pipelines import demo, glue, sweep, tables
from students import evaluate, presets


@dataclasses.dataclass(frozen=True)
class Method:
    init: str  # student.init
    stages: tuple  # student.stages
    encoder: str  # The student entry's key naming its initial encoder.
    definition: str  # As the README's table of methods gives it.


METHODS = {
    "PF": Method("pretrained", ("finetune",), "encoder",
                 "Pre-training + fine-tuning: the pre-trained compact model fine-tuned on the "
                 "labels alone (no teacher)."),
    "D": Method("random", ("distill",), "encoder",
                "Distillation alone: the same architecture from a random initialisation, "
                "trained on the teacher's soft labels."),
    "PD": Method("pretrained", ("distill",), "encoder",
                 "Pre-trained distillation: the pre-trained compact model trained on the "
                 "teacher's soft labels."),
    "PDF": Method("pretrained", ("distill", "finetune"), "encoder",
                  "PD, then fine-tuning on the labels."),
    "TT": Method("pretrained", ("distill",), "truncated_encoder",
                 "Truncated teacher: the teacher's first K layers (`distill convert --layers "
                 "K`) as the initialisation, then the same distillation as PD."),
}


class Key(typing.NamedTuple):
    """One cell; `size` is the transfer-set subsample, None for the whole store."""

    task: str
    student: str
    method: str
    seed: int
    size: int | None = None


def students(grid: config_lib.GridConfig, assets: str | None) -> list[dict]:
    """The grid's students: all 24 small BERTs, or the config's list."""
    if grid.students == "small_bert_24":
        return [{"name": name, "encoder": preset["encoder"]}
                for name, preset in presets.PRESETS.items()]
    if not isinstance(grid.students, list) or not all(
            isinstance(s, dict) and {"name", "encoder"} <= set(s) for s in grid.students):
        raise UserError("grid.students: expected 'small_bert_24' or a list of {name, encoder"
                        f"[, truncated_encoder]}}; received {grid.students!r}.")
    return [{k: _with_assets(v, assets) for k, v in s.items()} for s in grid.students]


def _with_assets(value, assets: str | None):
    """`{assets}` in a grid's string replaced by the demo assets' directory."""
    return value.replace("{assets}", assets) if assets and isinstance(value, str) else value


def cell_overrides(student: dict, key: Key) -> list[str] | None:
    method = METHODS[key.method]
    if method.encoder not in student:
        return None  # No converter-made truncated teacher for this student.
    return [f"seed={key.seed}", f"student.encoder={student[method.encoder]}",
            f"student.init={method.init}", f"student.stages={list(method.stages)!r}",
            f"data.store_sample={key.size}"]


def cell_dir(output: str, key: Key) -> str:
    size = "" if key.size is None else f"-n{key.size}"
    return rundir.cell(output, key.task, key.student, key.method, f"seed{key.seed}{size}")


def cell_keys(grid: config_lib.GridConfig, task: str, names: list[str],
              store_size: int) -> list[Key]:
    """The task's cells in running order: PD before PDF, which reuses PD's distillation;
    a method that does not distil (PF) only on the whole store, and transfer sizes only
    below the store's size."""
    too_large = [n for n in grid.transfer_sizes if n >= store_size]
    if too_large:
        print(f"[reproduce] {task}: grid.transfer_sizes {too_large} are not below the store's "
              f"{store_size} examples; those points are the whole store, not run again")
    sizes = [None] + [n for n in grid.transfer_sizes if n < store_size]
    methods = sorted(grid.methods, key=lambda m: m == "PDF")
    return [Key(task, name, method, seed, size) for name in names for method in methods
            for seed in grid.seeds for size in sizes
            if size is None or "distill" in METHODS[method].stages]


def _check(grid: config_lib.GridConfig) -> None:
    bad = [m for m in grid.methods if m not in METHODS]
    if bad:
        raise UserError(f"grid.methods: unknown {bad}; expected some of {sorted(METHODS)}.")
    # grid.transfer_sizes are checked when the config loads (distill/config.py).


def run(cfg: config_lib.Config, output: str) -> dict:
    grid = cfg.grid
    _check(grid)
    assets, base = None, list(grid.overrides)
    if grid.assets == "demo":
        assets = rundir.assets(output)
        base = demo.grid_assets(assets) + base
    base = [_with_assets(o, assets) for o in base]
    grid_students = {s["name"]: s for s in students(grid, assets)}
    # The task-level config (teacher, store) names the grid's first student, not the
    # config's default one, so that its preflight fetches no handle the grid does not use.
    first = f"student.encoder={next(iter(grid_students.values()))['encoder']}"
    configs = {}
    for task in grid.tasks:  # Every task's inputs are checked before any teacher trains.
        task_config = _resolve(grid.task_config.format(task=task))
        task_cfg = config_lib.load(task_config, base + [f"task={task}", first])
        if grid.search:  # Selection needs the carved split; the shared teacher is made without it.
            task_cfg = sweep.with_heldout(task_cfg)
            sweep.space(task_cfg)
        configs[task] = task_config, task_cfg
        preflight.check(task_cfg, rundir.shared(output, task))
    cells, baselines, teachers, store_sizes = {}, {}, {}, {}
    for task, (task_config, task_cfg) in configs.items():
        baselines[task] = majority_scores(task_cfg)
        shared = rundir.shared(output, task)
        print(f"[reproduce] {task}: teacher and store in {shared}")
        reuse = [f"{k}={v}" for k, v in glue.shared_store(task_cfg, shared).items()]
        reuse.append(f"data.heldout_fraction={task_cfg.data.heldout_fraction}")
        teacher = teacher_results(task_cfg, shared)
        teachers[task] = {s: v["score"] for s, v in teacher.items()
                          if s not in ("eval_seconds", "imported")}
        store_sizes[task] = store.load_manifest(rundir.RunDir(shared).store)["examples"]
        for key in cell_keys(grid, task, list(grid_students), store_sizes[task]):
            extra = cell_overrides(grid_students[key.student], key)
            if extra is None:
                continue
            overrides = base + [f"task={task}"] + reuse + extra
            if key.method == "PDF" and not grid.search:
                reuse_distillation(cell_dir(output, key._replace(method="PD")), cell_dir(output, key))
            cells[key] = run_cell(task_config, overrides, cell_dir(output, key), teacher,
                                  shared if grid.search else None)
    distilling = {m for m, method in METHODS.items() if "distill" in method.stages}
    summary = tables.write_tables(cfg, cells, output, baselines, teachers, store_sizes, distilling)
    if summary["failed"]:
        raise PartialFailure(
            f"{len(summary['failed'])} of {summary['cells']} grid cells failed (the tables of the "
            f"{summary['done']} that finished are in {output}; rerun to retry the failed ones):\n"
            + "\n".join(f"  {cell}: {error.splitlines()[0]}" for cell, error in
                         summary["failed"].items()))
    return summary


def teacher_results(cfg: config_lib.Config, shared: str) -> dict:
    """The shared teacher's dev results, evaluated once per task for all its cells
    (kept in SHARED/metrics.json for the teacher and dev data they were computed on)."""
    paths = rundir.RunDir(shared, cfg)
    key = rundir.fingerprint([rundir.done_record(paths.stage_dir("teacher"))["fingerprint"],
                              data.labeled_inputs(cfg.data), cfg.data.max_eval_examples])
    if os.path.isfile(paths.metrics):
        with open(paths.metrics) as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return cached["teacher"]
    results = evaluate.evaluate_role(cfg, shared, "teacher")
    rundir.write_json_atomic(paths.metrics, evaluate.plain({"key": key, "teacher": results}))
    return results


def reuse_distillation(pd_dir: str, pdf_dir: str) -> None:
    """PDF's distillation is PD's (same student, seed, store and schedule): link PD's finished
    stage into the PDF cell, whose distill stage then finds itself done for the same inputs."""
    if rundir.link_stage(pd_dir, pdf_dir, "distill"):
        print(f"[reproduce] {pdf_dir}: PD's distillation, reused")


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


def run_cell(task_config: str, overrides: list[str], directory: str, teacher: dict,
             search_shared: str | None = None) -> dict:
    """One cell, skipped when done; a failure is recorded in cell.json, not raised.

    Args:
      teacher: the shared teacher's dev results (`teacher_results`).
      search_shared: with a per-cell search, the task's shared directory (teacher and store).
    """
    path = rundir.RunDir(directory).cell
    if os.path.isfile(path):
        with open(path) as f:
            previous = json.load(f)
        if previous["status"] == "done":
            return previous
    try:
        cfg = config_lib.load(task_config, overrides)
        if search_shared:
            cell = _search_cell(cfg, directory, search_shared)
        else:
            results = glue.run(cfg, directory, teacher_results=teacher)
            paths = rundir.RunDir(directory, cfg)
            cell = {"status": "done", "params": paths.summary(paths.final_stage)["params"],
                    "scores": {s.name: results["student"][s.name]["score"]
                               for s in tasks.get(cfg.task).dev_splits},
                    "top_class_share": {s.name: results["student"][s.name].get("top_class_share")
                                        for s in tasks.get(cfg.task).dev_splits},
                    "epochs": {s: paths.summary(s).get("epochs", []) for s in cfg.student.stages}}
    except Exception as e:  # One failed cell must not stop the grid.
        cell = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()}
        print(f"[reproduce] cell {directory} failed: {cell['error']}")
    rundir.write_json_atomic(path, cell)
    return cell


def _search_cell(cfg: config_lib.Config, directory: str, shared: str) -> dict:
    """The cell's search: its selected trial's dev scores, hyperparameters and the cost."""
    result = sweep.search(cfg, directory, shared)
    best = result["best"]
    if best is None:
        raise UserError(f"{directory}: no trial of the search finished.")
    trials = []
    for row in result["trials"]:
        trial_json = rundir.RunDir(rundir.trial(directory, row["trial_id"])).trial
        if os.path.isfile(trial_json):
            with open(trial_json) as f:
                trials.append(json.load(f))
    best_dir = rundir.trial(directory, best["trial_id"])
    params = rundir.RunDir(best_dir, cfg).summary(cfg.student.stages[-1])["params"]
    trial_scores = {k[len("dev_"):]: v for k, v in best.items() if k.startswith("dev_")}
    selected = {"trial_id": best["trial_id"], "heldout": best["score"],
                "trial_dev_scores": trial_scores,
                **{k: v for k, v in best.items() if "." in k or k == "tuner/epochs"}}
    cell = {"status": "done", "params": params, "scores": trial_scores,
            "model": "the selected trial (trained on train less the heldout split)",
            "selected": selected, "trials": len(trials),
            "trial_seconds": round(sum(t["seconds"] for t in trials), 1)}
    if cfg.grid.refit:
        values = next(t["values"] for t in trials if t["trial_id"] == best["trial_id"])
        t0 = time.time()
        cell["scores"] = sweep.refit(cfg, directory, shared, best["trial_id"], values,
                                     rundir.RunDir(directory).refit)
        cell.update(model="the selected setting refit on all of train (grid.refit)",
                    refit_seconds=round(time.time() - t0, 1))
    return cell
