"""Same command, same numbers: two runs of one tiny config (teacher, store, MLM, distill,
finetune) and two one-trial sweeps on a supplied teacher, each in a fresh process, end with
identical metrics and stores."""
import json
import os

import pytest

from conftest import ok, run_cli

VOLATILE = ("eval_seconds", "environment", "file")  # Timings and paths, not results.


def results(value):
    """metrics.json without its timings and paths."""
    if isinstance(value, dict):
        return {k: results(v) for k, v in value.items() if k not in VOLATILE}
    return value


def store_digest(run):
    manifest = json.load(open(os.path.join(run, "store", "manifest.json")))
    return [(s["file"], s["records"], s["sha256"]) for s in manifest["shards"]]


@pytest.mark.large
def test_the_same_command_gives_the_same_numbers(small_task, tmp_path):
    unlabeled = small_task["transfer"]
    recipe = [*small_task["sets"], "--set", "teacher.finetuned=null",
              "--set", "teacher.train.epochs=1", "--set", "student.stages=['distill', 'finetune']",
              "--set", f"student.mlm.data=['{unlabeled}']", "--set", "student.mlm.train.epochs=1",
              "--set", "student.mlm.seq_length=32"]
    runs = [str(tmp_path / f"run{i}") for i in (1, 2)]
    for run in runs:
        ok(run_cli("run", "configs/demo.yaml", "--output", run, *recipe))
    first, second = (results(json.load(open(os.path.join(r, "metrics.json")))) for r in runs)
    assert first == second
    assert store_digest(runs[0]) == store_digest(runs[1])
    mlm = [json.load(open(os.path.join(r, "student", "mlm", "done.json")))["summary"] for r in runs]
    assert mlm[0]["heldout_loss_after"] == mlm[1]["heldout_loss_after"]  # Seeded masks.
    for stage in ("distill", "finetune"):
        losses = [json.load(open(os.path.join(r, "student", stage, "done.json")))["summary"]
                  ["final_loss"] for r in runs]
        assert losses[0] == losses[1], stage

    sweeps = [str(tmp_path / f"sweep{i}") for i in (1, 2)]
    for sweep in sweeps:
        # On the supplied teacher: the runs above showed that teacher training repeats.
        ok(run_cli("sweep", "configs/sweeps/demo.yaml", "--output", sweep, *small_task["sets"],
                   "--set", "sweep.max_trials=1", "--set", "data.max_transfer_examples=300",
                   "--set", "student.distill.epochs=1"))
    trials = [[json.load(open(os.path.join(s, "trials", t, "trial.json")))
               for t in sorted(os.listdir(os.path.join(s, "trials")))] for s in sweeps]
    assert [t["values"] for t in trials[0]] == [t["values"] for t in trials[1]]
    assert [t["heldout"] for t in trials[0]] == [t["heldout"] for t in trials[1]]
