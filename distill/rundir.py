"""The run directory: where every artifact lives, stage bookkeeping, and atomic writes.

This module is the one owner of the run directory's layout (README, "The run
directory"). Stages and pipelines ask a `RunDir` for paths; none computes
another stage's path. A stage directory holds `inputs.json` (what the stage is
made from: the config fields it reads and its upstream artifacts'
fingerprints), written when the stage starts, and `done.json` (fingerprint and
summary), written last. `stage()` is the one skeleton every stage runs through:
a rerun skips a done stage with the same inputs, resumes an unfinished one,
and refuses, without touching anything, a directory made from other inputs.
A finished stage keeps no checkpoint to resume from: it is never resumed.

    python -c "from distill.rundir import RunDir; print(RunDir('runs/demo').student_model)"
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Callable

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from distill import distribute, stages
from distill.errors import UserError

INPUTS, DONE = "inputs.json", "done.json"
TRAIN = "train"  # In a training stage's directory: its checkpoints and TensorBoard logs.


def checkpoints(workdir: str) -> str:
    """Where `training.fit` keeps what it resumes from: weights, optimizer slots and step."""
    return os.path.join(workdir, "checkpoints")


class RunDir:
    """The paths of one run's artifacts.

    Args:
      root: the run directory (`--output`).
      cfg: the run's config, where it redirects an artifact elsewhere: a teacher
        supplied ready (`teacher.finetuned`), a shared store (`data.store`), or
        the student's last stage (`student.stages`).
    """

    def __init__(self, root: str, cfg=None):
        self.root, self.cfg = root, cfg

    def stage_dir(self, stage: str) -> str:
        """A stage's directory as the stage table gives it (`distill/stages.py`): RUN/teacher,
        RUN/store (or `data.store`), RUN/student/{mlm,distill,finetune}."""
        directory = stages.get(stage).directory
        if directory is None:
            raise ValueError(f"stage {stage!r} has no directory of its own")
        if directory == "store":
            return self.store
        return os.path.join(self.root, *directory.split("/"))

    def member(self, k: int) -> "RunDir":
        """Ensemble member k's own run directory, RUN/teachers/<k> (its teacher stage)."""
        return RunDir(os.path.join(self.members, str(k)))

    @property
    def members(self) -> str:
        """RUN/teachers: where an ensemble's members live."""
        return os.path.join(self.root, "teachers")

    def workdir(self, stage: str, restart: int | None = None) -> str:
        """Checkpoints and TensorBoard logs of a training stage (of one teacher restart)."""
        if restart is None:
            return os.path.join(self.stage_dir(stage), TRAIN)
        return os.path.join(self.stage_dir(stage), f"restart{restart}", TRAIN)

    @property
    def restarts(self) -> str:
        """The teacher restarts' scores on the gate's split, one entry as each finishes."""
        return os.path.join(self.stage_dir("teacher"), "restarts.json")

    def model(self, stage: str) -> str:
        """The classifier SavedModel a training stage exports."""
        return os.path.join(self.stage_dir(stage), "model")

    def weights(self, stage: str) -> str:
        """A student stage's weights checkpoint, which the next stage starts from."""
        return os.path.join(self.stage_dir(stage), "weights")

    @property
    def teacher_model(self) -> str:
        return (self.cfg and self.cfg.teacher.finetuned) or self.model("teacher")

    @property
    def store(self) -> str:
        return (self.cfg and self.cfg.data.store) or os.path.join(self.root, "store")

    @property
    def final_stage(self) -> str:
        """The student stage whose model is evaluated and exported: the last one run."""
        return self.cfg.student.stages[-1]

    @property
    def student_model(self) -> str:
        return self.model(self.final_stage)

    @property
    def mlm_encoder(self) -> str:
        return os.path.join(self.stage_dir("mlm"), "encoder")

    @property
    def metrics(self) -> str:
        return os.path.join(self.root, "metrics.json")

    def predictions(self, role: str, split: str) -> str:
        return os.path.join(self.root, "predictions", f"{role}-{split}.npz")

    def submission(self, filename: str) -> str:
        return os.path.join(self.root, "submission", filename)

    @property
    def report(self) -> str:
        return os.path.join(self.root, "report.md")

    @property
    def serving(self) -> str:
        return os.path.join(self.root, "serving.json")

    @property
    def onnx(self) -> str:
        """What `distill export --format onnx` measured: size, latency, dev agreement."""
        return os.path.join(self.root, "onnx.json")

    @property
    def tflite(self) -> str:
        """What `distill export --format tflite` measured: size, latency, dev agreement."""
        return os.path.join(self.root, "tflite.json")

    @property
    def config(self) -> str:
        return os.path.join(self.root, "config.yaml")

    def save_config(self, yaml_text: str) -> None:
        """RUN/config.yaml, written once a command has finished, so that a command refused
        for bad input leaves the run directory as it was."""
        write_text_atomic(self.config, yaml_text)

    @property
    def cell(self) -> str:
        """A grid cell's record (status, scores, error) in the cell's run directory."""
        return os.path.join(self.root, "cell.json")

    @property
    def refit(self) -> str:
        """A searched grid cell's refit run: its selected setting trained on all of train."""
        return os.path.join(self.root, "refit")

    @property
    def trial(self) -> str:
        """A sweep trial's record in the trial's run directory."""
        return os.path.join(self.root, "trial.json")

    def summary(self, stage: str) -> dict:
        """The summary a finished stage recorded (see `done_record`)."""
        return done_record(self.stage_dir(stage))["summary"]


def shared(output: str, task: str | None = None) -> str:
    """The run directory of the one teacher and store that a sweep (or a grid's task) shares."""
    return os.path.join(output, "shared", *([task] if task else []))


def trial(output: str, trial_id: str) -> str:
    """A sweep trial's run directory."""
    return os.path.join(output, "trials", trial_id)


def cell(output: str, *parts: str) -> str:
    """A grid cell's run directory, OUTPUT/cells/<task>/<student>/<method>/<seed...>."""
    return os.path.join(output, "cells", *parts)


def assets(output: str) -> str:
    """Where `sweep.assets: demo` / `grid.assets: demo` build the demo's data and encoders."""
    return os.path.join(output, "assets")


# ----------------------------------------------------------------------------- bookkeeping


def fingerprint(obj) -> str:
    """A short, stable hash of any JSON-able value."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _first_difference(old, new, prefix=""):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else (prefix.rstrip("."), old, new)


def _has_progress(stage_dir: str) -> bool:
    """Whether a stage left anything worth keeping (a checkpoint, a model), not just logs.

    A stage refused for bad input (say, a mistyped handle) leaves only its inputs, so
    rerunning it with the input corrected starts it afresh instead of refusing.
    """
    for _, dirs, files in os.walk(stage_dir):
        dirs[:] = [d for d in dirs if d != "tensorboard"]
        if any(f != INPUTS for f in files):
            return True
    return False


def begin(stage_dir: str, inputs: dict) -> dict | None:
    """Returns the finished stage's `done.json` if it is complete for `inputs`, else None.

    Raises:
      UserError: if `stage_dir` was made from different inputs.
    """
    os.makedirs(stage_dir, exist_ok=True)
    path = os.path.join(stage_dir, INPUTS)
    inputs = json.loads(json.dumps(inputs, default=str))
    if os.path.isfile(path) and _has_progress(stage_dir):
        with open(path) as f:
            old = json.load(f)
        diff = _first_difference(old, inputs)
        if diff:
            key, was, now = diff
            raise UserError(f"{stage_dir} was made from other inputs ({key}: {was!r} there, "
                            f"{now!r} now); nothing was changed. Use another --output, or "
                            f"remove {stage_dir} to redo this stage.")
    else:
        write_json_atomic(path, inputs)
    done = os.path.join(stage_dir, DONE)
    if os.path.isfile(done):
        with open(done) as f:
            return json.load(f)
    return None


def finish(stage_dir: str, inputs: dict, summary: dict) -> dict:
    """Marks the stage complete; returns the record (with its fingerprint)."""
    record = {"fingerprint": fingerprint(inputs), "summary": summary}
    if distribute.is_chief():  # Other workers of a cluster leave the record to the chief.
        write_json_atomic(os.path.join(stage_dir, DONE), record)
        # A done stage is skipped, never resumed, so its last checkpoint (the weights and
        # AdamW's two slots: three times the model, 1.3 GB for a BERT-Base teacher) would
        # only fill the disk, once per stage of every sweep trial and grid cell. Its model,
        # weights, curve and logs stay.
        shutil.rmtree(checkpoints(os.path.join(stage_dir, TRAIN)), ignore_errors=True)
    return record


def stage(name: str, stage_dir: str, inputs: dict, work: Callable[[], dict]) -> dict:
    """The skeleton of every stage: skip when done for `inputs`, else `work()`, then finish.

    Args:
      name: the stage's name in progress lines ("teacher", "distill", ...).
      stage_dir: where its `inputs.json` and `done.json` live.
      inputs: everything the stage is made from (config fields, upstream fingerprints).
      work: does the stage's work (resuming what an interrupted run left) and
        returns its summary.

    Returns:
      The stage's `done.json` record: {"fingerprint", "summary"}.
    """
    done = begin(stage_dir, inputs)
    if done:
        print(f"[{name}] complete in {stage_dir}; skipping")
        return done
    return finish(stage_dir, inputs, work())


def link_stage(source_run: str, target_run: str, stage: str) -> bool:
    """Links `source_run`'s finished `stage` into `target_run`, where the stage then finds
    itself done if its inputs are the same (and is refused if not); True if linked."""
    source = RunDir(source_run).stage_dir(stage)
    target = RunDir(target_run).stage_dir(stage)
    if not os.path.isfile(os.path.join(source, DONE)) or os.path.lexists(target):
        return False
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.symlink(os.path.relpath(source, os.path.dirname(target)), target)
    return True


def done_record(stage_dir: str) -> dict:
    """The `done.json` of a finished upstream stage.

    Raises:
      UserError: if that stage has not finished.
    """
    path = os.path.join(stage_dir, DONE)
    if not os.path.isfile(path):
        name = os.path.basename(stage_dir.rstrip("/"))
        raise UserError(f"{stage_dir} is not complete; run the {name} stage first "
                        f"(or `distill run` for the whole recipe).")
    with open(path) as f:
        return json.load(f)


# ----------------------------------------------------------------------------- one command per directory

LOCK = ".lock"  # In a run directory while a command writes into it: who holds it, and since when.


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            who = json.load(f)
        return (f"process {who['pid']} (`{who['command']}`), running since {who['since']}")
    except (OSError, ValueError, KeyError):
        return "another process"


def _held_by_other(path: str) -> bool:
    """Whether a live process holds the lock at `path` (a dead one's lock is free: the kernel
    released its flock when it died)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def lock(directory: str, shared: bool = False):
    """Holds `directory` for this command: another live command on it, or on a directory
    above it, is refused at once with its pid, command and start time.

    Args:
      shared: several cooperating processes may hold it together (the workers of one
        labeling job, or of multi-worker training); an exclusive holder still refuses them.

    A killed holder's lock is free again (flock dies with its process), so it is taken
    over without asking. The lock file goes when the command ends, and so does the
    directory if the command made it and left nothing else in it.

    Raises:
      UserError: naming the live holder; nothing was written.
    """
    directory = os.path.abspath(directory)
    for parent in _ancestors(directory):
        if _held_by_other(os.path.join(parent, LOCK)):
            raise UserError(f"{parent} is in use by {_holder(os.path.join(parent, LOCK))}, and "
                            f"{directory} is inside it; wait for it to finish (or stop it) and "
                            f"rerun. Nothing was written.")
    created = not os.path.isdir(directory)
    path = os.path.join(directory, LOCK)
    try:
        os.makedirs(directory, exist_ok=True)
        fd = _acquire(path, shared)
    except OSError as e:
        raise UserError(f"Output directory {directory} is not writable ({e.strerror}); expected "
                        f"a directory this user can create files in.") from e
    if fd is None:
        if created:
            shutil.rmtree(directory, ignore_errors=True)
        raise UserError(f"{directory} is in use by {_holder(path)}; two commands must not write "
                        f"one run directory. Wait for it to finish (or stop it), or use another "
                        f"--output. Nothing was written.")
    try:
        yield
    finally:
        _release(fd, path, shared, directory if created else None)


def _ancestors(directory: str) -> list[str]:
    parents, parent = [], os.path.dirname(directory)
    while parent != os.path.dirname(parent):
        parents.append(parent)
        parent = os.path.dirname(parent)
    return parents


def _acquire(path: str, shared: bool) -> int | None:
    """The lock file's descriptor, locked; None if a live process holds it otherwise."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
            break
        os.close(fd)  # Its holder removed it as we opened it: lock the new file instead.
    if not shared or os.fstat(fd).st_size == 0:
        record = json.dumps({"pid": os.getpid(), "command": " ".join(["distill", *sys.argv[1:]]),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
    return fd


def _release(fd: int, path: str, shared: bool, made: str | None) -> None:
    try:
        if not shared or _try_exclusive(fd):  # The last of a shared group removes it.
            os.unlink(path)
            if made and not os.listdir(made):
                os.rmdir(made)
    except OSError:
        pass
    finally:
        os.close(fd)


def _try_exclusive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


# ----------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def output_errors(path: str):
    """Turns a failed write (disk full, no permission) into a UserError that names `path`."""
    try:
        yield
    except (OSError, tf.errors.OpError) as e:
        reason = getattr(e, "strerror", None) or getattr(e, "message", None) or str(e)
        raise UserError(f"Could not write {path}: {reason.splitlines()[-1]}. Everything finished "
                        f"before is intact; make room (or fix the permissions) and rerun the same "
                        f"command to resume.") from e


def check_writable(directory: str, need_bytes: int = 0) -> None:
    """Refuses, before any work, an output directory that cannot be written or lacks room.

    Args:
      directory: created if missing.
      need_bytes: an estimate of what the stage will write; 0 checks only writability.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as e:
        raise UserError(f"Output directory {directory} is not writable ({e.strerror}); expected "
                        f"a directory this user can create files in.") from e
    free = shutil.disk_usage(directory).free
    if free < need_bytes:
        raise UserError(f"Output directory {directory}: {free / 2**20:.0f} MiB free on its disk; "
                        f"this stage writes about {need_bytes / 2**20:.0f} MiB. Nothing was "
                        f"written; make room and rerun.")


@contextlib.contextmanager
def atomic_path(path: str, clear_stale: bool = False):
    """Yields a temporary name beside `path`; renames it to `path` when the block succeeds.

    The one atomic write of the project: a crash never leaves half a file at `path`,
    and a failed block removes the temporary file. With `clear_stale` (a file only one
    process writes, such as a store's shard), temporary files a crashed earlier run left
    are removed first. The temporary name keeps `path`'s extension (numpy and others
    append their own otherwise).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    stem, ext = os.path.splitext(path)
    for stale in glob.glob(glob.escape(stem) + ".tmp*" + glob.escape(ext)) if clear_stale else []:
        os.remove(stale)
    tmp = f"{stem}.tmp{os.getpid()}{ext}"
    try:
        yield tmp
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)


def write_file_atomic(path: str, write: Callable[[str], None]) -> None:
    """Calls `write(tmp)` through `atomic_path`; a failed write raises a UserError naming
    `path`."""
    with atomic_path(path) as tmp, output_errors(path):
        write(tmp)


def write_text_atomic(path: str, content: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(content)

    write_file_atomic(path, write)


def write_json_atomic(path: str, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def replace_dir(path: str, write: Callable[[str], None]) -> str:
    """Calls `write(tmp)` to fill a temporary directory, then swaps it in for `path`.

    A crash leaves either the old directory or none at `path`, never a half
    SavedModel; a stale temporary directory from an earlier crash is cleared first.
    """
    tmp = path.rstrip("/") + ".tmp"
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    try:
        with output_errors(path):
            write(tmp)
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path
