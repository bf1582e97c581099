"""Benchmark cases in fresh processes of their own: each gets its own peak RSS and no caches
warmed by another case. Imports nothing heavy, so the PyTorch peer can use it too."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def scratch(prefix: str, keep: str | None = None) -> Iterator[str]:
    """A folder for a benchmark's encoders, stores and runs (throughput.py's take 5.5 GB),
    removed when the benchmark ends, by error or Ctrl-C too: left behind, a few runs filled
    the disk that CI then ran on. `keep`, a folder the user named, is used and kept."""
    if keep:
        os.makedirs(keep, exist_ok=True)
        yield keep
        return
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def peak_rss_kib() -> int:
    """This process's peak resident memory (VmHWM: ru_maxrss would carry a forking parent's)."""
    return _status_kib("VmHWM")


def rss_kib() -> int:
    """This process's resident memory now."""
    return _status_kib("VmRSS")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def run_python(args: list[str]) -> dict:
    """`python ARGS` in a fresh process; the JSON object on the last line of its stdout that
    starts with `{`.

    Raises:
      RuntimeError: with the end of its stderr, if it failed or printed no such line.
    """
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(lines[-1])
