"""Stage bookkeeping in the run directory: what a stage was made from, and whether it is done.

A stage directory holds `inputs.json` (what the stage is made from: the config
fields it reads and its upstream artifacts' fingerprints), written when the
stage starts, and `done.json` (inputs, fingerprint, summary), written last.
A rerun skips a done stage with the same inputs, resumes an unfinished one,
and refuses, without touching anything, a directory made from other inputs.
"""
from __future__ import annotations

import hashlib
import json
import os

from distill import distribute
from distill.errors import UserError
from distill.records import write_json_atomic

INPUTS, DONE = "inputs.json", "done.json"


def fingerprint(obj) -> str:
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
    for root, dirs, files in os.walk(stage_dir):
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
    return record


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
