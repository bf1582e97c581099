"""A soft-label store from another teacher's outputs: an LLM, an API, a PyTorch model.

    distill import-labels CONFIG --labels FILE --output RUN   # writes RUN/store

FILE is JSON Lines, one example a line: `text` (and `text_b` for pair tasks) and the
teacher's outputs under the key `imported.kind` names, by label name so that no order can
be mixed up:

    {"text": "a gem of a film", "probabilities": {"negative": 0.1, "positive": 0.9}}
    {"text": "...", "logits": {"negative": -1.2, "positive": 2.0}}
    {"text": "...", "log_probs": {"negative": -2.3, "positive": -0.1}}
    {"text": "...", "top_logprobs": {"Yes": -0.05, "No": -3.2, "Maybe": -5.0}}  # label words
    {"text": "...", "score": 3.8}                                               # STS-B

`top_logprobs` are the top-k log-probabilities of label *words* as LLM serving stacks
return them: `imported.label_words` maps words (case and surrounding spaces ignored) to
the task's labels; the words of one label add up, and the probability mass outside the
top k is shared equally by the labels none of whose words appeared. Outputs produced at a
temperature (`imported.temperature`) are brought to T=1: logits = T * log p.
The texts pass the same filters as our own labeling (de-duplication and the contamination
guard, `distill/transfer.py`); the manifest records the file's sha256, the kind, the
temperature and the teacher's name. A bad row is refused with one line naming it; nothing
is written then.
"""
from __future__ import annotations

import json
import math
import os

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from distill import config as config_lib, data, rundir, store as store_lib, tasks, transfer
from distill.errors import UserError

VERSION = 1  # Of this reader's conversions; recorded with the file's sha256.


def to_logits(values: dict, task: tasks.Task, imported: config_lib.ImportConfig,
              where: str) -> np.ndarray:
    """One row's outputs as logits at T=1 over the task's labels, in their order.

    Raises:
      UserError: naming `where` (the file and line) and what was wrong.
    """
    names = list(task.label_names)
    if imported.kind == "top_logprobs":
        values = _labels_from_words(values, names, imported.label_words, where)
    elif sorted(values) != sorted(names):
        missing, unknown = sorted(set(names) - set(values)), sorted(set(values) - set(names))
        raise UserError(f"{where}: {imported.kind} must name each of {names} once; missing "
                        f"{missing}, unknown {unknown}.")
    try:
        row = np.array([float(values[n]) for n in names], np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {imported.kind} must map label names to numbers; received "
                        f"{values!r}.") from None
    if not np.all(np.isfinite(row)):
        raise UserError(f"{where}: {imported.kind} holds NaN or infinity ({dict(zip(names, row))}).")
    if imported.kind == "logits":
        return (imported.temperature * row).astype(np.float32)
    probabilities = np.exp(row) if imported.kind == "log_probs" else row
    if np.any(probabilities < 0) or abs(probabilities.sum() - 1) > imported.tolerance:
        raise UserError(f"{where}: {imported.kind} must be probabilities that sum to 1 within "
                        f"imported.tolerance {imported.tolerance}; they sum to "
                        f"{probabilities.sum():.6g}.")
    return (imported.temperature * np.log(np.maximum(probabilities, 1e-30))).astype(np.float32)


def _labels_from_words(top: dict, names: list[str], words: dict, where: str) -> dict:
    """Label-word log-probabilities -> each label's probability (see the module docstring)."""
    lookup = {w.strip().lower(): label for w, label in words.items()}
    mass = {n: 0.0 for n in names}
    for word, logprob in top.items():
        if not isinstance(logprob, (int, float)) or not math.isfinite(logprob):
            raise UserError(f"{where}: top_logprobs[{word!r}] is {logprob!r}; expected a finite "
                            f"log-probability.")
        label = lookup.get(str(word).strip().lower())
        if label is not None:
            mass[label] += math.exp(logprob)
    if not any(mass.values()):
        raise UserError(f"{where}: none of the top_logprobs words {sorted(top)} is a label word "
                        f"of imported.label_words ({sorted(words)}).")
    rest = max(0.0, 1.0 - sum(math.exp(v) for v in top.values()))
    unseen = [n for n in names if mass[n] == 0.0]
    for n in unseen:
        mass[n] = max(rest / len(unseen), 1e-6)
    total = sum(mass.values())
    return {n: v / total for n, v in mass.items()}


def read(path: str, task: tasks.Task, imported: config_lib.ImportConfig) -> dict:
    """Every row of the labels file, checked: {"text_a", "text_b", "logits"} arrays."""
    if not os.path.isfile(path):
        raise UserError(f"--labels {path}: no such file; expected JSON Lines of the teacher's "
                        f"outputs (teachers/imported.py).")
    key = "score" if task.is_regression else imported.kind
    rows = {"text_a": [], "text_b": [], "logits": []}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: not a JSON object ({e.msg}).") from None
            text_a, text_b = row.get("text"), row.get("text_b", "")
            if not isinstance(text_a, str) or not text_a.strip():
                raise UserError(f"{where}: `text` is empty or missing; expected the example's text.")
            if task.is_pair and (not isinstance(text_b, str) or not text_b.strip()):
                raise UserError(f"{where}: {task.name} is a sentence-pair task; expected "
                                f"`text_b` beside `text`.")
            if key not in row:
                raise UserError(f"{where}: no {key!r}; expected the teacher's outputs under "
                                f"{key!r} (imported.kind).")
            rows["text_a"].append(text_a)
            rows["text_b"].append(text_b if task.is_pair else "")
            rows["logits"].append(_regression(row[key], where) if task.is_regression else
                                  to_logits(_mapping(row[key], key, where), task, imported, where))
    if not rows["text_a"]:
        raise UserError(f"--labels {path}: holds no rows.")
    return {k: np.asarray(v, object if k != "logits" else np.float32) for k, v in rows.items()}


def _mapping(value, key: str, where: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{where}: {key} must map label names to numbers; received {value!r}.")
    return value


def _regression(value, where: str) -> np.ndarray:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: score must be a finite number; received {value!r}.")
    return np.array([value], np.float32)


def run(cfg: config_lib.Config, labels: str, output: str) -> dict:
    """Checks and filters the labels file, then writes OUTPUT/store; returns its manifest."""
    task = tasks.get(cfg.task)
    rows = read(labels, task, cfg.imported)
    n = len(rows["text_a"])
    ids = np.array([f"imported/{i}" for i in range(n)], object)
    source = data.Source(f"imported:{labels}", "transfer", n, lambda: tf.data.Dataset.from_tensor_slices(
        {"id": ids, "text_a": rows["text_a"], "text_b": rows["text_b"],
         "label": np.full(n, data.missing_label(task), np.float32 if task.is_regression else np.int64)}))
    keep, report = transfer.filter_external(cfg.data, task, source, f"imported:{labels}")
    digest = store_lib.sha256(labels)
    producer = {
        "task": task.name, "task_type": "regression" if task.is_regression else "classification",
        "label_names": list(task.label_names),
        "teacher": {"imported": os.path.abspath(labels), "sha256": digest,
                    "name": cfg.imported.teacher or "unnamed", "kind": cfg.imported.kind,
                    "temperature": cfg.imported.temperature, "reader_version": VERSION,
                    "fingerprint": digest[:16]},
        "preprocessor": {"handle": None, "seq_length": None},  # Raw text: no teacher tokenizer.
        "source": {"imported": os.path.abspath(labels), "examples": int(keep.sum()), **report},
    }
    path = rundir.RunDir(output).store
    writer = store_lib.Writer(path, producer, int(keep.sum()), cfg.teacher.shard_size,
                              task.num_outputs, task.is_regression)
    kept = np.flatnonzero(keep)
    for k in writer.pending():
        start, count = writer.slice(k)
        writer.write_shard(k, ({"id": ids[i].encode(), "text_a": rows["text_a"][i].encode(),
                                "text_b": rows["text_b"][i].encode(),
                                "label": data.missing_label(task), "logits": rows["logits"][i]}
                               for i in kept[start:start + count]))
    print(f"[import-labels] {len(kept)} of {n} rows of {labels} into {path} (teacher "
          f"{producer['teacher']['name']}, {cfg.imported.kind} at T={cfg.imported.temperature})")
    return writer.manifest
