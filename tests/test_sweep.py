"""`distill sweep`: every oracle, resume, the summary, and keras-tuner's distributed mode."""
import csv
import json
import os
import shutil
import socket

import pytest

from conftest import ROOT, run_cli
from distill import config
from pipelines import demo, sweep

SWEEP = os.path.join(ROOT, "configs", "sweeps", "demo.yaml")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return demo.make_assets(str(tmp_path_factory.mktemp("assets")), train=500, dev=100,
                            unlabeled=10)


def sweep_overrides(assets, *extra):
    return [*demo.overrides(assets), "data.transfer=['labeled:train']",
            "data.max_train_examples=500", "data.max_transfer_examples=500",
            "data.max_eval_examples=100", "teacher.train.epochs=1",
            "teacher.min_margin=-1.0",  # 15 teacher steps need not learn; tests/test_gate.py
            "student.distill.epochs=1", *extra]


@pytest.fixture(scope="module")
def first(tmp_path_factory, assets):
    """A finished one-trial random sweep: its teacher and store serve every test below."""
    out = tmp_path_factory.mktemp("first")
    sweep.run(config.load(SWEEP, sweep_overrides(assets, "sweep.max_trials=1")), str(out))
    return str(out)


def start_from(first, out, whole=False):
    """A copy of the first sweep (whole, to resume it) or of its shared teacher and store."""
    if whole:
        shutil.copytree(first, out)
    else:
        shutil.copytree(os.path.join(first, "shared"), os.path.join(out, "shared"))
    return out


def read_trials(output):
    with open(os.path.join(output, "trials.csv")) as f:
        return list(csv.DictReader(f))


TRIALS = {"random": 3, "bayesian": 5, "hyperband": 6, "grid": 4}


@pytest.mark.large
@pytest.mark.parametrize("oracle", ["random", "bayesian", "hyperband", "grid"])
def test_each_oracle_runs_its_trials_on_one_store(tmp_path, assets, first, oracle):
    extra = [f"sweep.oracle={oracle}", f"sweep.max_trials={TRIALS[oracle]}"]
    if oracle == "bayesian":  # One dimension: 3 random trials, then 2 from the Gaussian process.
        extra.append("sweep.space={'student.distill.learning_rate': "
                     "{'min': 1e-4, 'max': 3e-3, 'log': True}}")
    if oracle == "hyperband":
        extra.append("sweep.max_epochs=3")  # brackets of 3 + 1 and 2 trials: 6 in all
    if oracle == "grid":
        extra.append("sweep.space={'student.distill.learning_rate': [1e-3, 1e-4], "
                     "'student.stages': [['distill'], ['distill', 'finetune']]}")
    cfg = config.load(SWEEP, sweep_overrides(assets, *extra))
    # The random sweep resumes the finished one-trial sweep: its trial must not run again.
    out = start_from(first, str(tmp_path / oracle), whole=oracle == "random")
    stamp = os.path.getmtime(os.path.join(out, "trials", "0", "trial.json")) \
        if oracle == "random" else None
    result = sweep.run(cfg, out)
    trials = read_trials(out)
    assert len(trials) >= TRIALS[oracle] and all(t["score"] not in ("", "None") for t in trials)
    # One teacher pass: a single store, and no trial made its own.
    assert os.path.isdir(os.path.join(out, "shared", "store"))
    assert not any(os.path.isdir(os.path.join(out, "trials", t["trial_id"], "store"))
                   for t in trials)
    best = max(trials, key=lambda t: float(t["score"]))
    assert result["best"]["trial_id"] == best["trial_id"]
    summary = open(os.path.join(out, "summary.md")).read()
    assert "Teacher passes: 1" in summary and f"trial {best['trial_id']}" in summary
    assert best["dev_validation"] not in ("", None)  # dev reported for the best trial only
    assert sum(t["dev_validation"] not in ("", None) for t in trials) == 1
    assert os.path.getsize(os.path.join(out, "objective.png")) > 1000
    if oracle == "grid":
        combos = {(t["student.distill.learning_rate"], t["student.stages"]) for t in trials}
        assert len(combos) == 4
    if oracle == "random":
        assert len(trials) == 3
        assert os.path.getmtime(os.path.join(out, "trials", "0", "trial.json")) == stamp


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.large
def test_distributed_sweep_with_a_chief_and_two_workers(tmp_path, assets, first):
    out = start_from(first, str(tmp_path / "distributed"))
    args = ["sweep", SWEEP, "--output", out]
    for item in sweep_overrides(assets, "sweep.max_trials=4"):
        args += ["--set", item]
    port = str(free_port())
    procs = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": port}
        procs[tuner_id] = run_cli(*args, env=env, wait=False)
    try:
        logs = {k: p.communicate(timeout=900)[0] for k, p in procs.items()}
    finally:  # A chief whose workers died would wait for them forever.
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for tuner_id, proc in procs.items():
        assert proc.returncode == 0, f"{tuner_id}:\n{logs[tuner_id][-3000:]}"
    trials = read_trials(out)
    assert len(trials) == 4
    ran_on = set()
    for t in trials:
        ran_on.add(json.load(open(os.path.join(out, "trials", t["trial_id"], "trial.json")))["pid"])
    assert len(ran_on) == 2  # both workers ran trials


@pytest.mark.large
def test_the_demo_sweep_config_runs_as_it_is(tmp_path):
    """configs/sweeps/demo.yaml builds its own assets (one trial, to keep CI short)."""
    out = tmp_path / "sweep"
    result = run_cli("sweep", SWEEP, "--output", str(out), "--set", "sweep.max_trials=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "assets" / "SST-2" / "train.tsv").is_file()
    assert "1 of 1 trials finished" in (out / "summary.md").read_text()


@pytest.mark.parametrize("stages, searched", [
    (["distill"], {"student.*.batch_size", "student.*.learning_rate"}),
    (["finetune"], {"student.*.batch_size", "student.*.learning_rate", "student.finetune.epochs"}),
    (["distill", "finetune"],
     {"student.*.batch_size", "student.*.learning_rate", "student.finetune.epochs"})])
def test_a_search_covers_the_fine_tuning_epochs_only_where_the_method_fine_tunes(stages, searched):
    cfg = config.load(None, ["sweep.preset=small_bert_grid_finetune_epochs",
                             f"student.stages={stages!r}"])
    assert set(sweep.space(cfg)) == searched
    assert sweep.space(cfg).get("student.finetune.epochs", [1, 2, 3, 4]) == [1, 2, 3, 4]
    # A space that also searches the stages keeps every key: a trial may fine-tune.
    both = config.override(cfg, {"sweep.space": {"student.stages": [["distill"],
                                                                     ["distill", "finetune"]]}})
    assert "student.finetune.epochs" in sweep.space(both)
