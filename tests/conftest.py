"""Shared fixtures: a 10-word vocab, tiny encoders exported in the TF Hub format, GLUE files.

Everything is built locally and loaded through the same code path as a real
hub handle (`hub.KerasLayer` / `hub.load` on a SavedModel directory).
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
from distill import encoders, text

ROOT = str(pathlib.Path(__file__).resolve().parents[1])
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "good", "bad", "movie", "##s",
         "not", "very"]


def run_cli(*args: str, env: dict | None = None, wait: bool = True, output=subprocess.PIPE,
            preexec_fn=None, timeout: float = 600):
    """Runs the `distill` command in a process of its own, from the repository root.

    Returns the finished `subprocess.CompletedProcess` (text stdout/stderr), or with
    `wait=False` the running `Popen` (stdout and stderr merged into `output`).
    """
    command = [sys.executable, "-m", "pipelines.cli", *args]
    env = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec_fn)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """`result`, after checking that the command succeeded (else its stderr's end)."""
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_clean_error(result: subprocess.CompletedProcess, message: str) -> str:
    """Exit status 2 and exactly one `distill: error:` line holding `message`; no traceback.

    Returns the error line."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("distill: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    return errors[0]


def needs_shared(*parts: str) -> pathlib.Path:
    """The path under ../shared/data, or a clean skip where this team's data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (it exists only on the team's machines)")
    return path


@pytest.fixture(scope="session")
def vocab_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory, vocab_file) -> str:
    """A 2-layer, hidden-16 BERT exported as a TF Hub encoder SavedModel."""
    cfg = encoders.BertConfig(num_layers=2, hidden_size=16, num_heads=2, vocab_size=len(VOCAB),
                              max_position=64)
    return encoders.export_random(str(tmp_path_factory.mktemp("enc") / "encoder"), cfg, vocab_file)


@pytest.fixture(scope="session")
def tiny_preprocessor(tmp_path_factory, vocab_file) -> str:
    return text.export(str(tmp_path_factory.mktemp("pre") / "preprocessor"), vocab_file)


def write(path: os.PathLike, lines: list[str]) -> str:
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def small_task(tmp_path_factory) -> dict:
    """The demo's synthetic task, small: 300 train + 600 unlabeled texts, its encoders and
    vocab, and a teacher classifier supplied ready (random, with logits large enough to teach).

    `sets` are the `--set` items that point configs/demo.yaml at them.
    """
    import tensorflow as tf

    from distill import models
    from pipelines import demo

    root = str(tmp_path_factory.mktemp("small_task"))
    paths = demo.make_assets(root, train=300, dev=100, unlabeled=600)
    teacher = models.build(paths["teacher"], 2, dropout=0.0)
    kernel = teacher.get_layer("logits").kernel
    kernel.assign(tf.random.stateless_normal(kernel.shape, seed=[1, 2]))
    paths["teacher_classifier"] = models.export(teacher, os.path.join(root, "teacher_classifier"),
                                                {"task": "sst2"})
    paths["sets"] = [item for o in demo.overrides(paths) for item in ("--set", o)] + [
        "--set", f"teacher.finetuned={paths['teacher_classifier']}",
        # A random teacher is no trained one: its quality gate is opened.
        "--set", "teacher.min_margin=-1.0",
        "--set", "teacher.shard_size=100"]  # 900 transfer examples: 9 shards.
    return paths
