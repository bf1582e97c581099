"""`distill inspect STORE`: what the teacher taught, read from any soft-label store.

    distill inspect runs/demo/store [--output DIR]

One streaming pass over the shards (nothing is held but counters, histograms and the
ten least and most confident examples) gives: examples per transfer source and per
shard, the teacher's predicted classes, its confidence (the largest softened
probability) and entropy, its agreement with the gold labels the store has (those of
`labeled:` sources), and the extremes. Prints a table and writes DIR/inspect.md and
DIR/inspect.png (DIR: the store's run directory by default).
"""
from __future__ import annotations

import collections
import heapq
import os
import time

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
from scipy import special, stats

from distill import plots, rundir, store as store_lib

BINS = np.linspace(0.0, 1.0, 21)  # Confidence histogram: 20 bins of 0.05.
EXTREMES = 10


class Tally:
    """The running statistics of one pass."""

    def __init__(self, num_outputs: int, regression: bool):
        self.regression = regression
        self.sources = collections.Counter()
        self.predicted = np.zeros(max(num_outputs, 1), np.int64)
        self.confidence = np.zeros(len(BINS) - 1, np.int64)
        self.entropy_sum = 0.0
        self.examples = 0
        self.gold = self.agree = 0
        self.values = []  # Regression: the teacher's outputs (one float each).
        self.least, self.most = [], []  # Heaps of (±confidence, id, text).

    def add(self, batch: dict) -> None:
        ids = [i.decode() for i in batch["id"]]
        self.sources.update(i.rsplit("/", 1)[0] for i in ids)
        self.examples += len(ids)
        logits = batch["logits"]
        if self.regression:
            self.values.append(logits[:, 0].copy())
            known = ~np.isnan(batch["label"])
            self.gold += int(known.sum())
            return
        probs = special.softmax(logits, axis=1)
        confidence = probs.max(axis=1)
        predicted = probs.argmax(axis=1)
        self.predicted += np.bincount(predicted, minlength=len(self.predicted))
        self.confidence += np.histogram(confidence, BINS)[0]
        self.entropy_sum += float(stats.entropy(probs, axis=1).sum())
        labels = batch["label"]
        known = labels >= 0
        self.gold += int(known.sum())
        self.agree += int((predicted[known] == labels[known]).sum())
        for c, i, a, b in zip(confidence, ids, batch["text_a"], batch["text_b"]):
            text = a.decode() + (f" ||| {b.decode()}" if b else "")
            for heap, key in ((self.least, -c), (self.most, c)):
                item = (float(key), i, text)
                if len(heap) < EXTREMES:
                    heapq.heappush(heap, item)
                elif item > heap[0]:
                    heapq.heapreplace(heap, item)


def inspect(store: str, output: str | None = None, batch_size: int = 1024) -> dict:
    """Streams `store` once; returns the summary and writes inspect.md and inspect.png."""
    dataset, manifest = store_lib.read(store, verify_checksums=False)
    regression = manifest["task_type"] == "regression"
    tally = Tally(manifest["num_outputs"], regression)
    t0 = time.time()
    for batch in dataset.batch(batch_size).as_numpy_iterator():
        tally.add(batch)
    seconds = time.time() - t0
    summary = {"store": store, "task": manifest["task"], "examples": tally.examples,
               "seconds": round(seconds, 2), "examples_per_second": round(tally.examples / seconds),
               "sources": dict(tally.sources),
               "shards": {s["file"]: s["records"] for s in manifest["shards"]},
               "gold_labels": tally.gold}
    if regression:
        values = np.concatenate(tally.values) if tally.values else np.zeros(0)
        summary.update(mean_output=float(values.mean()), std_output=float(values.std()))
    else:
        names = manifest.get("label_names") or [str(k) for k in range(len(tally.predicted))]
        summary.update(
            predicted={n: int(c) for n, c in zip(names, tally.predicted)},
            confidence_histogram=tally.confidence.tolist(),
            mean_entropy=tally.entropy_sum / max(tally.examples, 1),
            agreement_with_gold=tally.agree / tally.gold if tally.gold else None,
            least_confident=[(-c, i, t) for c, i, t in sorted(tally.least, reverse=True)],
            most_confident=[(c, i, t) for c, i, t in sorted(tally.most, reverse=True)])
    output = output or os.path.dirname(os.path.abspath(store.rstrip("/")))
    lines = markdown(summary)
    rundir.write_text_atomic(os.path.join(output, "inspect.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    if not regression:
        _plot(summary, os.path.join(output, "inspect.png"))
    print(f"[inspect] {tally.examples:,} examples in {seconds:.1f} s "
          f"({summary['examples_per_second']:,}/s); wrote {output}/inspect.md"
          + ("" if regression else " and inspect.png"))
    return summary


def markdown(summary: dict) -> list[str]:
    lines = [f"# Store {summary['store']} ({summary['task']}): {summary['examples']:,} examples",
             "", "| source | examples |", "|---|---|"]
    lines += [f"| {s} | {n:,} |" for s, n in summary["sources"].items()]
    lines += ["", "| shard | records |", "|---|---|"]
    lines += [f"| {s} | {n:,} |" for s, n in summary["shards"].items()]
    if "mean_output" in summary:
        return lines + ["", f"Teacher output: mean {summary['mean_output']:.4f}, std "
                            f"{summary['std_output']:.4f}."]
    total = max(summary["examples"], 1)
    lines += ["", "| teacher's class | examples | share |", "|---|---|---|"]
    lines += [f"| {c} | {n:,} | {n / total:.1%} |" for c, n in summary["predicted"].items()]
    agreement = summary["agreement_with_gold"]
    lines += ["", f"- mean entropy of the teacher's distribution: {summary['mean_entropy']:.4f} nats",
              "- agreement with the gold labels: " + (
                  f"{agreement:.2%} of {summary['gold_labels']:,} labeled examples"
                  if agreement is not None else "no gold labels in this store"),
              "", "Confidence (largest probability), 20 bins of 0.05 from 0 to 1: "
              + " ".join(str(n) for n in summary["confidence_histogram"])]
    for title, rows in (("Least confident", summary["least_confident"]),
                        ("Most confident", summary["most_confident"])):
        lines += ["", f"## {title}", "", "| confidence | id | text |", "|---|---|---|"]
        lines += [f"| {c:.4f} | {i} | {t[:120].replace('|', '/')} |" for c, i, t in rows]
    return lines


def _plot(summary: dict, path: str) -> None:
    with plots.figure(path, 2, (9, 3.2)) as (_, (hist, bars)):
        hist.bar(BINS[:-1], summary["confidence_histogram"], width=0.05, align="edge")
        hist.set_xlabel("teacher confidence")
        hist.set_ylabel("examples")
        bars.bar(list(summary["predicted"]), list(summary["predicted"].values()))
        bars.set_xlabel("teacher's predicted class")
