"""`distill inspect`: a store's statistics, checked against the store read plainly."""
import json

import numpy as np

from conftest import ok, run_cli
from distill import store


def test_inspect_reports_what_the_teacher_taught(small_task, tmp_path):
    run = tmp_path / "run"
    args = ["configs/demo.yaml", "--output", str(run), *small_task["sets"]]
    ok(run_cli("teacher", *args))
    ok(run_cli("label", *args))
    result = ok(run_cli("inspect", str(run / "store")))
    assert "Traceback" not in result.stderr

    dataset, manifest = store.read(str(run / "store"))
    records = list(dataset.batch(10_000).as_numpy_iterator())[0]
    logits, labels = records["logits"], records["label"]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = probs.argmax(axis=1)
    known = labels >= 0
    report = (run / "inspect.md").read_text()
    # Sources: the small task's 300 labeled and 600 unlabeled texts, as the manifest kept them.
    assert [s["kept"] for s in manifest["source"]["sources"]] == [300, 600]
    assert "| sst2/train | 300 |" in report and "| unlabeled.txt | 600 |" in report
    for k, name in enumerate(manifest["label_names"]):
        count = int((predicted == k).sum())
        assert f"| {name} | {count:,} | {count / len(predicted):.1%} |" in report
    agreement = (predicted[known] == labels[known]).mean()
    assert f"{agreement:.2%} of {known.sum():,} labeled examples" in report
    entropy = float(-(probs * np.log(probs)).sum(axis=1).mean())
    assert f"{entropy:.4f} nats" in report
    least = [i.decode() for i in records["id"][np.argsort(probs.max(axis=1))[:3]]]
    table = report.split("## Least confident")[1].split("## Most confident")[0]
    assert [line.split(" | ")[1] for line in table.splitlines()[4:7]] == least
    assert (run / "inspect.png").stat().st_size > 1000
    assert json.loads((run / "store" / "manifest.json").read_text()) == manifest  # unchanged
