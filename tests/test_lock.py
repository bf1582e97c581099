"""One command per run directory: a second live command is refused at once, naming the
first; a killed holder's lock is taken over; cooperating workers share it."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli
from distill import rundir
from distill.errors import UserError

HOLD = ("import sys, time; sys.argv = ['distill', 'run', 'x']; from distill import rundir\n"
        "with rundir.lock({d!r}, shared={shared}):\n"
        "    print('held', flush=True); time.sleep(60)")


def hold(directory, shared=False):
    """A process that holds the lock of `directory` until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(d=str(directory), shared=shared)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_command_is_refused_naming_the_first_and_a_killed_ones_lock_is_taken(tmp_path):
    run = tmp_path / "run"
    holder = hold(run)
    try:
        t0 = time.time()
        with pytest.raises(UserError, match=rf"{run} is in use by process {holder.pid} "
                                            rf"\(`distill run x`\), running since 20\d\d-"):
            with rundir.lock(str(run)):
                pass
        assert time.time() - t0 < 1
        with pytest.raises(UserError, match=rf"{run} is in use by process {holder.pid}"):
            with rundir.lock(str(run / "trials" / "0")):  # Inside it: refused too.
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / rundir.LOCK).is_file()  # Left behind by the killed process ...
    with rundir.lock(str(run)):  # ... and taken over without asking.
        assert f'"pid": {os.getpid()}' in (run / rundir.LOCK).read_text()
    assert not (run / rundir.LOCK).exists()  # Gone when the command ends.
    fresh = tmp_path / "fresh"
    with rundir.lock(str(fresh)):
        assert fresh.is_dir()
    assert not fresh.exists()  # Made by the lock alone, and left empty: gone with it.


def test_workers_share_a_lock_that_an_exclusive_command_may_not_take(tmp_path):
    run = tmp_path / "run"
    worker = hold(run, shared=True)
    try:
        with rundir.lock(str(run), shared=True):  # A second worker of the same job.
            pass
        with pytest.raises(UserError, match="is in use by"):
            with rundir.lock(str(run)):
                pass
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()


@pytest.mark.large
def test_two_concurrent_runs_on_one_directory(small_task, tmp_path):
    """The second `distill run` is refused within seconds; the first finishes untouched."""
    run = str(tmp_path / "run")
    first = run_cli("run", "configs/demo.yaml", "--output", run, *small_task["sets"], wait=False)
    lock = os.path.join(run, rundir.LOCK)
    deadline = time.time() + 120
    while not os.path.isfile(lock) and time.time() < deadline:
        time.sleep(0.2)
    t0 = time.time()
    second = run_cli("run", "configs/demo.yaml", "--output", run, *small_task["sets"])
    assert time.time() - t0 < 30
    assert second.returncode == 2, second.stderr[-2000:]
    errors = [line for line in second.stderr.splitlines() if line.startswith("distill: error:")]
    assert len(errors) == 1 and f"is in use by process {first.pid}" in errors[0]
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:]
    assert os.path.isfile(os.path.join(run, "report.md")) and not os.path.exists(lock)
