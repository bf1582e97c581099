"""Metrics against scikit-learn / scipy, and the GLUE score as their mean."""
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from distill import metrics, tasks

rng = np.random.default_rng(1)
LABELS = rng.integers(0, 2, 200)
LOGITS = rng.normal(size=(200, 2)) + np.eye(2)[LABELS] * 0.8
PREDS = LOGITS.argmax(-1)


def test_cola_matthews():
    got = metrics.compute(tasks.get("cola"), LABELS, LOGITS)
    assert got["matthews_corrcoef"] == pytest.approx(skm.matthews_corrcoef(LABELS, PREDS))
    assert got["score"] == got["matthews_corrcoef"]


@pytest.mark.parametrize("name", ["mrpc", "qqp"])
def test_f1_and_accuracy(name):
    got = metrics.compute(tasks.get(name), LABELS, LOGITS)
    f1, acc = skm.f1_score(LABELS, PREDS), skm.accuracy_score(LABELS, PREDS)
    assert (got["f1"], got["accuracy"]) == pytest.approx((f1, acc))
    assert got["score"] == pytest.approx((f1 + acc) / 2)


def test_stsb_pearson_spearman():
    y = rng.uniform(0, 5, 100)
    pred = y + rng.normal(scale=1.0, size=100)
    got = metrics.compute(tasks.get("stsb"), y, pred[:, None])
    assert got["pearson"] == pytest.approx(stats.pearsonr(y, pred)[0])
    assert got["spearman"] == pytest.approx(stats.spearmanr(y, pred)[0])


def test_known_values():
    task = tasks.get("sst2")
    assert metrics.compute(task, [0, 1, 1, 0], np.eye(2)[[0, 1, 0, 0]])["accuracy"] == 0.75
    assert metrics.compute(tasks.get("cola"), [0, 1], np.eye(2)[[1, 0]])["score"] == -1.0
