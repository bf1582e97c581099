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


def test_glue_score_recomputes_the_small_bert_release_scores():
    """The leaderboard's score from the release's own per-task test rows (rounded to 0.1 there,
    hence the tolerance); the old ten-column mean (MNLI twice) overstated it."""
    from pipelines import published

    for name, (_, _, score, rows) in published.RELEASE_GLUE_TEST.items():
        ours = metrics.glue_score({task: metrics.task_score(v) for task, v in rows.items()})
        assert abs(ours - score) <= 0.06, (name, ours, score)
        columns = [v for task in rows for v in ([rows[task][0], rows[task][1]] if task == "mnli"
                                                 else [metrics.task_score(rows[task])])]
        assert sum(columns) / len(columns) - score > 0.5  # The ten-column mean is off.


def test_glue_score_needs_all_nine_tasks():
    assert metrics.glue_score({"sst2": 0.9}) is None
    assert metrics.glue_score({t: 0.5 for t in tasks.TASKS}) == 0.5


def test_a_constant_sts_b_prediction_scores_zero_not_nan():
    stsb = tasks.get("stsb")
    labels = np.array([0.0, 2.5, 5.0, 4.0])
    result = metrics.compute(stsb, labels, np.full((4, 1), 3.2))
    assert result == {"pearson": 0.0, "spearman": 0.0, "score": 0.0}
    per_task = {t: 0.5 for t in tasks.TASKS} | {"stsb": result["score"]}
    assert metrics.glue_score(per_task) == pytest.approx(0.5 * 8 / 9)  # A number, not NaN.
    assert metrics.majority_baseline(stsb, labels, labels)["score"] == 0.0
    assert metrics.compute(stsb, labels, labels[:, None] * 2)["pearson"] == pytest.approx(1.0)


def test_the_share_of_the_most_predicted_class_shows_a_model_that_answers_a_constant():
    rte = tasks.get("rte")
    constant = np.tile([[2.0, -1.0]], (10, 1))  # Always class 0.
    assert metrics.top_class_share(rte, constant) == 1.0
    mixed = np.array([[1.0, 0.0]] * 7 + [[0.0, 1.0]] * 3)
    assert metrics.top_class_share(rte, mixed) == pytest.approx(0.7)
    assert metrics.top_class_share(tasks.get("stsb"), np.zeros((4, 1))) is None
