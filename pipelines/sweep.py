"""Hyperparameter sweeps over the student stages with keras-tuner.

    distill sweep configs/sweeps/sst2.yaml --output runs/sst2_sweep [--set sweep.max_trials=20]

One teacher pass serves every trial: OUTPUT/shared holds the teacher and the
soft-label store, and each trial (OUTPUT/trials/<id>) trains only a student
from them. Trials are chosen by a keras-tuner oracle (random, bayesian,
hyperband, grid) on the task's official metric over a heldout split carved
out of train with a fixed seed (`data.heldout_fraction`); the dev set is
only reported, never selected on. `DistillTuner` subclasses `keras_tuner.Tuner`
and runs our stages in `run_trial` (keras-tuner's own `fit` path is Keras 3;
ours is tf-keras). A rerun resumes: keras-tuner reloads its oracle from
OUTPUT/tuner and finished stages are skipped. Several processes share a sweep
through keras-tuner's distributed mode: set KERASTUNER_TUNER_ID ("chief",
"tuner0", ...), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT.

Writes OUTPUT/trials.csv, OUTPUT/summary.md and OUTPUT/objective.png.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import time

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import keras_tuner

from distill import (config as config_lib, data, plots, preflight, rundir, stages as stages_lib,
                     store, tasks)
from distill.errors import UserError
from pipelines import demo, glue
from students import evaluate

class GridOracle(keras_tuner.Oracle):
    """Every combination of the space's values, in order.

    The next combination is the first no trial has taken, read from the trials themselves,
    so a sweep killed mid-search resumes where it stopped; keras-tuner's GridSearchOracle
    keeps its order in memory only and fails on reload (KeyError on the next trial id).
    """

    def populate_space(self, trial_id):
        space = self.get_space().space
        names = [hp.name for hp in space]
        taken = {tuple(t.hyperparameters.values.get(n) for n in names)
                 for t in self.trials.values()}
        for combination in itertools.product(*(list(hp.values) for hp in space)):
            if combination not in taken:
                return {"status": "RUNNING", "values": dict(zip(names, combination))}
        return {"status": "STOPPED", "values": None}


ORACLES = {
    "random": keras_tuner.oracles.RandomSearchOracle,
    "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
    "hyperband": keras_tuner.oracles.HyperbandOracle,
    "grid": GridOracle,
}
# `student.*.KEY` is one hyperparameter set on every stage the trial trains (PDF: distill
# and finetune alike), so the release's grid stays 20 points whatever the method.
_RELEASE_GRID = {"student.*.batch_size": [8, 16, 32, 64, 128],
                 "student.*.learning_rate": [3e-4, 1e-4, 5e-5, 3e-5]}
PRESETS = {
    "small_bert_grid": _RELEASE_GRID,
    # The release's grid x the fine-tuning stage's epochs: PDF's fine-tuning is a second
    # round over a small D_L, which may overfit; the heldout split then chooses its length.
    # Searched only where the method fine-tunes (PF, PDF): 80 points there, 20 for PD.
    "small_bert_grid_finetune_epochs": {**_RELEASE_GRID, "student.finetune.epochs": [1, 2, 3, 4]},
}
OBJECTIVE = keras_tuner.Objective("score", direction="max")


def space(cfg: config_lib.Config) -> dict:
    """The search space: the preset's, updated by `sweep.space`, less the keys of student
    stages the config does not train (a PD cell searches no fine-tuning epochs), unless the
    space also searches `student.stages`."""
    if cfg.sweep.preset and cfg.sweep.preset not in PRESETS:
        raise UserError(f"sweep.preset: unknown preset {cfg.sweep.preset!r}; expected one of "
                        f"{sorted(PRESETS)}.")
    result = dict(PRESETS.get(cfg.sweep.preset, {}))
    result.update(cfg.sweep.space)
    if not result:
        raise UserError("sweep.space is empty and no sweep.preset is set; nothing to search.")
    for key in result:
        if not key.startswith("tuner/"):
            config_lib.check_key(key.replace("*", "distill", 1))
    if "student.stages" not in result:
        result = {k: v for k, v in result.items() if not _untrained(k, cfg.student.stages)}
    return result


def _untrained(key: str, trained: list) -> bool:
    """Whether `key` sets a student stage (`student.STAGE.…`) that is not in `trained`."""
    parts = key.split(".")
    return (len(parts) > 2 and parts[0] == "student" and parts[1] in stages_lib.student_stages()
            and parts[1] not in trained)


def _encode(value):
    """keras-tuner choices must be scalars: a list of stages becomes "distill+finetune"."""
    return "+".join(value) if isinstance(value, list) else value


def declare(hp: keras_tuner.HyperParameters, key: str, spec) -> None:
    """Declares one config key in keras-tuner's search space."""
    if isinstance(spec, list):
        hp.Choice(key, [_encode(v) for v in spec])
    elif isinstance(spec, dict) and {"min", "max"} <= set(spec):
        sampling = "log" if spec.get("log") else "linear"
        if isinstance(spec["min"], int) and isinstance(spec["max"], int):
            hp.Int(key, spec["min"], spec["max"], sampling=sampling)
        else:
            hp.Float(key, float(spec["min"]), float(spec["max"]), sampling=sampling)
    else:
        raise UserError(f"sweep.space.{key}: expected a list of choices or {{min, max[, log]}}; "
                        f"received {spec!r}.")


def trial_config(base: config_lib.Config, values: dict, shared: str) -> config_lib.Config:
    """The run config of one trial: the base with the trial's values, the shared teacher/store."""
    settings = glue.shared_settings(shared, base)
    stages = values.get("student.stages", "+".join(base.student.stages)).split("+")
    for key, value in values.items():
        if key == "tuner/epochs":  # Hyperband's budget for this trial.
            settings["student.distill.epochs"] = float(value)
        elif key.startswith("student.*."):
            settings.update({key.replace("*", stage, 1): value for stage in stages})
        elif not key.startswith("tuner/"):
            settings[key] = value.split("+") if key == "student.stages" else value
    return config_lib.override(base, settings)


class DistillTuner(keras_tuner.Tuner):
    """A keras-tuner Tuner whose trials are our student stages on a shared store."""

    def __init__(self, base: config_lib.Config, output: str, shared: str, **kwargs):
        self.base, self.output, self.shared = base, output, shared
        super().__init__(directory=output, project_name="tuner", **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        cfg = trial_config(self.base, trial.hyperparameters.values, self.shared)
        run_dir = rundir.trial(self.output, trial.trial_id)
        finished = rundir.RunDir(run_dir).trial
        if os.path.isfile(finished):  # Done before a kill that came before the oracle noted it.
            with open(finished) as f:
                result = json.load(f)
            if result["values"] == trial.hyperparameters.values:
                return {"score": result["heldout"]["score"]}
        t0 = time.time()
        train_student(cfg, run_dir)
        heldout = evaluate.score(cfg, run_dir, "student", data.HELDOUT)
        result = {"trial_id": trial.trial_id, "values": trial.hyperparameters.values,
                  "heldout": heldout, "seconds": round(time.time() - t0, 1),
                  "tuner_id": self.tuner_id, "pid": os.getpid()}
        rundir.write_json_atomic(rundir.RunDir(run_dir).trial, result)
        return {"score": heldout["score"]}

    # Our models live in the trial directories; keras-tuner's model saving is not used.
    def save_model(self, trial_id, model, step=0):
        pass

    def load_model(self, trial):
        raise NotImplementedError("load a trial's student from OUTPUT/trials/<id>/student")


def make_tuner(cfg: config_lib.Config, output: str, shared: str) -> DistillTuner:
    if cfg.sweep.oracle not in ORACLES:
        raise UserError(f"sweep.oracle: unknown oracle {cfg.sweep.oracle!r}; expected one of "
                        f"{sorted(ORACLES)}.")
    hp = keras_tuner.HyperParameters()
    for key, spec in space(cfg).items():
        declare(hp, key, spec)
    # keras-tuner takes a seed of 0 for none and draws one from Python's `random`, whose
    # state by then depends on what the process did before: seed 0 would not repeat.
    kwargs = {"objective": OBJECTIVE, "hyperparameters": hp, "seed": cfg.seed + 1,
              "tune_new_entries": False}
    if cfg.sweep.oracle == "hyperband":
        kwargs.update(max_epochs=cfg.sweep.max_epochs, factor=3, hyperband_iterations=1)
    else:
        kwargs["max_trials"] = cfg.sweep.max_trials
    return DistillTuner(cfg, output, shared, oracle=ORACLES[cfg.sweep.oracle](**kwargs),
                        overwrite=False)


def _is_worker() -> bool:
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in tuner_id


def with_heldout(cfg: config_lib.Config) -> config_lib.Config:
    """Trials are selected on a split carved from train: 10% unless the config sets one."""
    if cfg.data.heldout_fraction > 0:
        return cfg
    return config_lib.override(cfg, {"data.heldout_fraction": 0.1})


def run(cfg: config_lib.Config, output: str) -> dict | None:
    """Runs (or resumes, or joins) the sweep; the chief or single process writes the summary."""
    if cfg.sweep.assets == "demo":
        cfg = demo.fill_placeholders(cfg, rundir.assets(output))
    cfg = with_heldout(cfg)
    shared = rundir.shared(output)
    space(cfg)  # A bad search space is refused before the teacher trains, too.
    preflight.check(cfg, shared)
    if _is_worker():  # The chief makes the teacher and store; workers wait for them.
        store.wait_complete(rundir.RunDir(shared).store)
    else:
        glue.shared_store(cfg, shared)
    return search(cfg, output, shared)


def search(cfg: config_lib.Config, output: str, shared: str) -> dict | None:
    """The trials (resumed trial by trial) on the teacher and store in `shared`; the chief or
    single process then writes trials.csv, summary.md and objective.png to `output`."""
    tuner = make_tuner(cfg, output, shared)
    tuner.search()
    if _is_worker():
        return None
    return write_outputs(cfg, tuner, output)


def refit(cfg: config_lib.Config, output: str, shared: str, trial_id: str, values: dict,
          run_dir: str) -> dict:
    """The selected setting `values` trained again in `run_dir` on all of D_L's train (no
    split carved out), on the same shared teacher and store; its dev scores.

    A stage the refit shares with the selected trial (distillation: the store is the same)
    is linked from the trial's directory, not trained again.
    """
    refit_cfg = config_lib.override(trial_config(cfg, values, shared), {"data.heldout_fraction": 0.0})
    if "distill" in refit_cfg.student.stages:
        rundir.link_stage(rundir.trial(output, trial_id), run_dir, "distill")
    train_student(refit_cfg, run_dir)
    return dev_scores(refit_cfg, run_dir)


def train_student(cfg: config_lib.Config, run_dir: str) -> None:
    """The student stages of `cfg` in `run_dir` (a trial's, a refit's), on a shared store."""
    rundir.check_writable(run_dir)
    for stage in cfg.student.stages:
        glue.run_stage(stage, cfg, run_dir)
    glue.save_config(cfg, run_dir)


def dev_scores(cfg: config_lib.Config, run_dir: str) -> dict:
    """The student's score on every dev split: reported, never selected on."""
    return {s.name: evaluate.score(cfg, run_dir, "student", s.name)["score"]
            for s in tasks.get(cfg.task).dev_splits}


def best_dev_scores(cfg: config_lib.Config, tuner: DistillTuner, trial_id: str) -> dict:
    """The dev scores of one trial: reported for the best trial only, never selected on."""
    trial = tuner.oracle.trials[trial_id]
    trial_cfg = trial_config(cfg, trial.hyperparameters.values, tuner.shared)
    scores = dev_scores(trial_cfg, rundir.trial(tuner.output, trial_id))
    return {f"dev_{split}": score for split, score in scores.items()}


def write_outputs(cfg: config_lib.Config, tuner: DistillTuner, output: str) -> dict:
    """trials.csv, summary.md and objective.png from the oracle's trials."""
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        values = {k: v for k, v in trial.hyperparameters.values.items()
                  if not k.startswith("tuner/") or k == "tuner/epochs"}
        rows.append({"trial_id": trial_id, "status": str(trial.status), "score": trial.score,
                     **values})
    done = [r for r in rows if r["score"] is not None]
    best = max(done, key=lambda r: r["score"]) if done else None
    if best:
        best.update(best_dev_scores(cfg, tuner, best["trial_id"]))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    rundir.write_text_atomic(os.path.join(output, "trials.csv"), table.getvalue())
    shared_store = rundir.RunDir(tuner.shared).store
    manifest = store.load_manifest(shared_store)
    _plot(done, os.path.join(output, "objective.png"))
    lines = [f"# Sweep: {cfg.task}, {cfg.sweep.oracle} search", "",
             f"- {len(done)} of {len(rows)} trials finished; objective: the task score on a "
             f"heldout split of {cfg.data.heldout_fraction:.0%} carved from train "
             f"(seed {cfg.data.heldout_seed}); the dev set is reported for the best trial "
             f"only and never selected on.",
             f"- Teacher passes: 1 (every trial reads the shared store of "
             f"{manifest['examples']} soft labels in {shared_store}).", ""]
    if best:
        lines += ["## Best trial", "", f"- trial {best['trial_id']}: heldout score "
                  f"{best['score']:.4f}; " + ", ".join(f"{k} {v:.4f}" for k, v in best.items()
                                                       if k.startswith("dev_")),
                  "- hyperparameters: " + ", ".join(
                      f"`{k}={v}`" for k, v in best.items()
                      if k not in ("trial_id", "status", "score") and not k.startswith("dev_")), ""]
    lines += ["## All trials", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
    rundir.write_text_atomic(os.path.join(output, "summary.md"), "\n".join(lines) + "\n")
    return {"trials": rows, "best": best}


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def _plot(rows: list[dict], path: str) -> None:
    """The objective against each hyperparameter, one panel each."""
    names = [k for k in (rows[0] if rows else {}) if k not in ("trial_id", "status", "score")
             and not k.startswith("dev_")]
    if not names:
        return
    with plots.figure(path, len(names), (4 * len(names), 3.2)) as (_, axes):
        for ax, name in zip(axes, names):
            xs = [r[name] for r in rows]
            numeric = all(isinstance(x, (int, float)) for x in xs)
            ax.scatter(xs if numeric else [str(x) for x in xs], [r["score"] for r in rows])
            if numeric and name.endswith("learning_rate"):
                ax.set_xscale("log")
            ax.set_xlabel(name)
            ax.set_ylabel("heldout score")
