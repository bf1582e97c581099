"""`distill import-labels`: a store from another teacher's outputs equals our own teacher's
store for the same texts, every bad row is refused with one line, and a student distils,
evaluates and exports from it."""
import json
import os

import numpy as np
import pytest
from scipy.special import softmax

from conftest import ok, run_cli
from distill import config, store as store_lib, tasks
from distill.errors import UserError
from pipelines import cli
from teachers import imported

NAMES = ["negative", "positive"]


def store_rows(path):
    """text -> logits of every record of a store."""
    dataset, _ = store_lib.read(str(path))
    return {ex["text_a"].decode(): ex["logits"] for ex in dataset.as_numpy_iterator()}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def our_store(small_task, tmp_path_factory):
    run = tmp_path_factory.mktemp("ours") / "run"
    args = ["configs/demo.yaml", "--output", str(run), *small_task["sets"]]
    assert cli.main(["teacher", *args]) == 0 and cli.main(["label", *args]) == 0
    return run / "store"


def test_an_imported_store_equals_our_teachers_after_softmax(our_store, small_task, tmp_path):
    ours = store_rows(our_store)
    for temperature in (1.0, 2.0):  # Probabilities a teacher gave at T: logits back at T=1.
        rows = [{"text": t, "probabilities": dict(zip(NAMES, softmax(z / temperature).tolist()))}
                for t, z in ours.items()]
        labels = write_jsonl(tmp_path / f"probs{temperature}.jsonl", rows)
        out = tmp_path / f"imported{temperature}"
        assert cli.main(["import-labels", "configs/demo.yaml", "--labels", labels, "--output",
                         str(out), *small_task["sets"],
                         "--set", "imported.kind=probabilities",
                         "--set", f"imported.temperature={temperature}",
                         "--set", "imported.teacher=our own teacher, by another road"]) == 0
        theirs = store_rows(out / "store")
        assert theirs.keys() == ours.keys()  # The same filters kept the same texts.
        for text, logits in ours.items():
            np.testing.assert_allclose(softmax(theirs[text]), softmax(logits), atol=1e-6)
        manifest = store_lib.load_manifest(str(out / "store"))
        assert manifest["teacher"]["sha256"] == store_lib.sha256(labels)
        assert (manifest["teacher"]["kind"], manifest["teacher"]["temperature"]) == (
            "probabilities", temperature)
        assert manifest["teacher"]["name"] == "our own teacher, by another road"
        assert manifest["source"]["sources"][0]["guarded"] is True


def test_top_logprobs_of_label_words_become_the_tasks_labels():
    cfg = config.load(None, ["imported.kind=top_logprobs",
                             "imported.label_words={'Good': 'positive', 'great': 'positive', "
                             "'bad': 'negative'}"])
    top = {" good": np.log(0.5), "Great": np.log(0.2), "bad": np.log(0.1), "meh": np.log(0.1)}
    logits = imported.to_logits(top, tasks.get("sst2"), cfg.imported, "f:1")
    # positive 0.7, negative 0.1, normalised over the task's labels (the 0.2 else dropped).
    np.testing.assert_allclose(softmax(logits), [0.125, 0.875], atol=1e-6)
    only = imported.to_logits({"good": np.log(0.6)}, tasks.get("sst2"), cfg.imported, "f:1")
    np.testing.assert_allclose(softmax(only), [0.4, 0.6], atol=1e-6)  # The rest, to "negative".


BAD_ROWS = {
    "unknown label": ({"text": "x", "probabilities": {"negative": 0.5, "great": 0.5}},
                      "probabilities must name each of ['negative', 'positive'] once; missing "
                      "['positive'], unknown ['great']"),
    "missing label": ({"text": "x", "probabilities": {"negative": 1.0}},
                      "probabilities must name each of ['negative', 'positive'] once; missing "
                      "['positive'], unknown []"),
    "sum": ({"text": "x", "probabilities": {"negative": 0.5, "positive": 0.2}},
            "probabilities must be probabilities that sum to 1 within imported.tolerance 0.001; "
            "they sum to 0.7"),
    "nan": ({"text": "x", "probabilities": {"negative": float("nan"), "positive": 0.5}},
            "probabilities holds NaN or infinity"),
    "empty text": ({"text": "  ", "probabilities": {"negative": 0.5, "positive": 0.5}},
                   "`text` is empty or missing"),
    "no outputs": ({"text": "x"}, "no 'probabilities'; expected the teacher's outputs"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_refused_naming_it(case, small_task, tmp_path, capsys):
    row, message = BAD_ROWS[case]
    good = {"text": "a fine film", "probabilities": {"negative": 0.25, "positive": 0.75}}
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    out = tmp_path / "run"
    status = cli.main(["import-labels", "configs/demo.yaml", "--labels", str(labels), "--output",
                       str(out), *small_task["sets"], "--set", "imported.kind=probabilities"])
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("distill: error:")]
    assert status == 2 and len(lines) == 1, lines
    assert f"{labels}:2: {message}" in lines[0]
    assert not out.exists()


def test_a_pair_task_needs_text_b(tmp_path):
    cfg = config.load(None, ["task=rte", "imported.kind=log_probs"])
    labels = write_jsonl(tmp_path / "rte.jsonl", [{"text": "A man sleeps.", "log_probs": {
        "entailment": -0.1, "not_entailment": -2.4}}])
    with pytest.raises(UserError, match=rf"{labels}:1: rte is a sentence-pair task; expected "
                                        r"`text_b` beside `text`"):
        imported.read(labels, tasks.get("rte"), cfg.imported)


@pytest.mark.large
def test_a_student_distils_evaluates_and_exports_from_an_imported_store(small_task, tmp_path):
    rng = np.random.default_rng(0)
    texts = open(small_task["transfer"]).read().splitlines()
    labels = write_jsonl(tmp_path / "llm.jsonl", [
        {"text": t, "logits": {"negative": float(z), "positive": float(-z)}}
        for t, z in zip(texts, rng.normal(size=len(texts)) * 3)])
    run = str(tmp_path / "run")
    sets = [*small_task["sets"], "--set", "teacher.finetuned=null"]
    ok(run_cli("import-labels", "configs/demo.yaml", "--labels", labels, "--output", run, *sets,
               "--set", "imported.teacher=an LLM"))
    store = os.path.join(run, "store")
    ok(run_cli("run", "configs/demo.yaml", "--output", run, *sets, "--set", f"data.store={store}"))
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["teacher"] == {"imported": "an LLM"}
    assert 0.0 <= metrics["student"]["validation"]["accuracy"] <= 1.0
    assert not os.path.exists(os.path.join(run, "teacher", "model"))  # No teacher trained.
    report = open(os.path.join(run, "report.md")).read()
    assert "an LLM (imported labels)" in report and "an LLM (imported from" in report
    ok(run_cli("export", run, "--output", str(tmp_path / "serving")))
