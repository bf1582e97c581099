"""Crash safety: kill -9 while labeling or training, a full disk, an unwritable output."""
import glob
import json
import os
import resource
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_clean_error, ok, run_cli
from distill import rundir, store as store_lib
from pipelines import cli

SLOW_LABELS = ["--set", "teacher.label_batch_size=2"]  # Slow enough to be killed midway.


def distill_cli(*args, preexec_fn=None, wait=True):
    return run_cli(*args, preexec_fn=preexec_fn, wait=wait, output=subprocess.DEVNULL)


def kill_when(process, condition, timeout=300):
    """SIGKILLs `process` as soon as `condition()` holds; fails if it finished first."""
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def shards_done(store):
    try:
        manifest = json.loads(open(os.path.join(store, "manifest.json")).read())
    except (OSError, ValueError):
        return 0
    return sum("sha256" in s for s in manifest["shards"])


def assert_same_files(a, b):
    names = sorted(n for n in os.listdir(a) if not n.startswith("."))
    assert names == sorted(n for n in os.listdir(b) if not n.startswith("."))
    for name in names:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            assert fa.read() == fb.read(), name


@pytest.fixture(scope="module")
def reference_store(small_task, tmp_path_factory):
    """The store of an uninterrupted labeling run."""
    run = tmp_path_factory.mktemp("reference") / "run"
    ok(distill_cli("teacher", "configs/demo.yaml", "--output", str(run), *small_task["sets"]))
    ok(distill_cli("label", "configs/demo.yaml", "--output", str(run), *small_task["sets"],
                   *SLOW_LABELS))
    return str(run / "store")


@pytest.mark.large
def test_kill_9_while_labeling_then_rerun_gives_the_same_store(small_task, reference_store, tmp_path):
    run, store = tmp_path / "run", str(tmp_path / "run" / "store")
    args = ["configs/demo.yaml", "--output", str(run), *small_task["sets"], *SLOW_LABELS]
    ok(distill_cli("teacher", *args))
    kill_when(distill_cli("label", *args, wait=False), lambda: shards_done(store) >= 2)

    # What the crash left: a valid, incomplete manifest whose finished shards are whole.
    manifest = store_lib.load_manifest(store)
    finished = [s for s in manifest["shards"] if "sha256" in s]
    assert not manifest["complete"] and 2 <= len(finished) < 9
    for shard in finished:
        assert store_lib.sha256(os.path.join(store, shard["file"])) == shard["sha256"]

    ok(distill_cli("label", *args))
    assert not glob.glob(os.path.join(store, "*.tmp*"))  # The killed run's partial shard is gone.
    assert_same_files(store, reference_store)
    dataset, _ = store_lib.read(store)
    ids = [ex["id"] for ex in dataset.as_numpy_iterator()]
    assert len(ids) == len(set(ids)) == 900


@pytest.mark.large
def test_a_full_disk_fails_cleanly_and_the_rerun_finishes(small_task, reference_store, tmp_path):
    run, store = tmp_path / "run", str(tmp_path / "run" / "store")
    args = ["configs/demo.yaml", "--output", str(run), *small_task["sets"], *SLOW_LABELS]
    ok(distill_cli("teacher", *args))

    def tiny_disk():  # Files may not grow past 6 kB: a shard (about 9 kB) cannot be written.
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    error = assert_clean_error(distill_cli("label", *args, preexec_fn=tiny_disk), "File too large")
    assert "soft_labels-00000-of-00009.tfrecord" in error and "File too large" in error, error
    assert not glob.glob(os.path.join(store, "*.tmp*"))
    assert shards_done(store) == 0 and not store_lib.load_manifest(store)["complete"]

    ok(distill_cli("label", *args))
    assert_same_files(store, reference_store)


def weights(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(checkpoint)
            if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


@pytest.mark.large
def test_kill_9_while_training_then_rerun_ends_with_the_same_weights(small_task, reference_store,
                                                                     tmp_path):
    args = [*small_task["sets"], "--set", f"data.store={reference_store}",
            "--set", "deterministic=true", "--set", "student.stages=['distill']",
            "--set", "student.distill.epochs=1", "--set", "student.distill.checkpoint_every=5"]
    ok(distill_cli("distill", "configs/demo.yaml", "--output", str(tmp_path / "straight"), *args))

    crashed = tmp_path / "crashed"
    checkpoints = crashed / "student" / "distill" / "train" / "checkpoints"
    kill_when(distill_cli("distill", "configs/demo.yaml", "--output", str(crashed), *args, wait=False),
              lambda: tf.train.latest_checkpoint(str(checkpoints)) is not None)
    assert not (crashed / "student" / "distill" / "done.json").exists()
    resumed = ok(distill_cli("distill", "configs/demo.yaml", "--output", str(crashed), *args))
    assert "resuming from" in resumed.stderr + resumed.stdout

    summary = json.loads((crashed / "student" / "distill" / "done.json").read_text())["summary"]
    assert 0 < summary["steps_this_run"] < summary["steps"] == 29
    straight = weights(str(tmp_path / "straight" / "student" / "distill" / "weights"))
    again = weights(str(crashed / "student" / "distill" / "weights"))
    assert straight.keys() == again.keys() and len(straight) > 10
    for name in straight:
        np.testing.assert_array_equal(again[name], straight[name], err_msg=name)


def test_too_little_disk_space_is_refused_before_labeling(small_task, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    args = ["configs/demo.yaml", "--output", str(run), *small_task["sets"]]
    assert cli.main(["teacher", *args]) == 0
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    real = rundir.shutil.disk_usage
    monkeypatch.setattr(rundir.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=1 << 20))  # 1 MiB left.
    assert cli.main(["label", *args]) == 2
    error = capsys.readouterr().err
    assert "1 MiB free on its disk; this stage writes about 2 MiB" in error, error
    assert not (run / "store" / "soft_labels-00000-of-00009.tfrecord").exists()
    assert sorted(p.relative_to(run) for p in run.rglob("*") if "store" not in p.parts) == before


def test_an_unwritable_output_is_refused_before_work(small_task, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert cli.main(["teacher", "configs/demo.yaml", "--output", str(blocker / "run"),
                     *small_task["sets"]]) == 2
    error = capsys.readouterr().err
    assert f"Output directory {blocker}/run is not writable" in error, error
    assert blocker.read_text() == "not a directory"
