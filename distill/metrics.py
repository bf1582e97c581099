"""GLUE's official metrics through scikit-learn and scipy.

Matthews correlation for CoLA, F1 and accuracy for MRPC and QQP, Pearson and
Spearman for STS-B, accuracy for the rest. A task's score is the mean of its
metrics, as on the GLUE leaderboard, and the GLUE score is the mean of the nine
tasks' scores (MNLI's is the mean of matched and mismatched; the diagnostic AX
does not count).
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from distill import tasks as tasks_lib

def _correlation(statistic):
    """A correlation that is 0 where one side is constant (scipy's is NaN there, and a NaN
    would make the task's and the GLUE score NaN): a constant prediction carries no
    information about the labels, as the majority baseline counts it."""
    def correlation(y, p):
        if np.ptp(np.asarray(y, np.float64)) == 0 or np.ptp(np.asarray(p, np.float64)) == 0:
            return 0.0
        return statistic(y, p)[0]
    return correlation


_METRICS = {
    "accuracy": lambda y, p: skm.accuracy_score(y, p),
    "f1": lambda y, p: skm.f1_score(y, p),
    "matthews_corrcoef": lambda y, p: skm.matthews_corrcoef(y, p),
    "pearson": _correlation(stats.pearsonr),
    "spearman": _correlation(stats.spearmanr),
}


def predictions(task: tasks_lib.Task, logits: np.ndarray) -> np.ndarray:
    """Class indices, or the regression value."""
    logits = np.asarray(logits)
    return logits[:, 0] if task.is_regression else logits.argmax(axis=-1)


def compute(task: tasks_lib.Task, labels, logits) -> dict[str, float]:
    """The task's metrics plus `score` (their mean), as floats."""
    preds = predictions(task, logits)
    labels = np.asarray(labels)
    result = {name: float(_METRICS[name](labels, preds)) for name in task.metrics}
    result["score"] = task_score([result[m] for m in task.metrics])
    return result


def top_class_share(task: tasks_lib.Task, logits) -> float | None:
    """The share of the most often predicted class (None for regression). Near 1.0, the
    model answers one class whatever the input, and scores what that constant scores: on a
    near-balanced task such as RTE, the majority baseline, or below it when the constant is
    the other class."""
    if task.is_regression:
        return None
    preds = predictions(task, logits)
    return float(np.bincount(preds, minlength=task.num_outputs).max() / max(1, len(preds)))


def task_score(values: list[float]) -> float:
    """A task's leaderboard score: the mean of its metrics (or of MNLI's two dev sets)."""
    return float(np.mean(values))


def glue_score(task_scores: dict[str, float]) -> float | None:
    """The GLUE score: the mean over the nine tasks of each task's score.

    Returns None unless every one of the nine tasks has a score: a mean over some
    of them is not comparable with the leaderboard's.
    """
    if set(task_scores) != set(tasks_lib.TASKS):
        return None
    return float(np.mean([task_scores[t] for t in tasks_lib.TASKS]))


def majority_baseline(task: tasks_lib.Task, train_labels, labels) -> dict[str, float]:
    """The task's metrics of always answering train's majority class (its mean, for STS-B).

    A constant has no correlation with anything: Pearson and Spearman count as 0.
    """
    train_labels, labels = np.asarray(train_labels), np.asarray(labels)
    if task.is_regression:  # A constant: both correlations are 0 (`compute` agrees).
        result = compute(task, labels, np.full((len(labels), 1), train_labels.mean()))
    else:
        majority = np.bincount(train_labels[train_labels >= 0], minlength=task.num_outputs).argmax()
        result = compute(task, labels, np.eye(task.num_outputs)[np.full(len(labels), majority)])
    result["score"] = task_score([result[m] for m in task.metrics])
    return result
