"""Every loss against a direct numpy computation."""
import numpy as np
import pytest
import tensorflow as tf

from distill import losses
from distill.errors import UserError

rng = np.random.default_rng(0)
S = rng.normal(size=(5, 3)).astype(np.float32)
T = rng.normal(size=(5, 3)).astype(np.float32) * 3


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_ce(temperature):
    p, q = softmax(T / temperature), softmax(S / temperature)
    expected = -temperature ** 2 * (p * np.log(q)).sum(-1)
    np.testing.assert_allclose(losses.soft_ce(S, T, temperature), expected, rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_kl(temperature):
    p, q = softmax(T / temperature), softmax(S / temperature)
    expected = temperature ** 2 * (p * (np.log(p) - np.log(q))).sum(-1)
    np.testing.assert_allclose(losses.kl(S, T, temperature), expected, rtol=1e-4, atol=1e-6)
    # KL is soft cross-entropy minus the teacher's entropy (times T^2).
    entropy = -temperature ** 2 * (p * np.log(p)).sum(-1)
    np.testing.assert_allclose(losses.soft_ce(S, T, temperature) - entropy, expected, rtol=1e-4,
                               atol=1e-5)


def test_mse():
    np.testing.assert_allclose(losses.mse(S[:, :1], T[:, :1], 1.0), (S[:, 0] - T[:, 0]) ** 2, rtol=1e-6)


def test_hard_losses():
    labels = np.array([0, 2, 1, 1, 0])
    expected = -np.log(softmax(S)[np.arange(5), labels])
    np.testing.assert_allclose(losses.hard(S, labels, regression=False), expected, rtol=1e-5)
    y = np.array([0.5, 1.0, 2.0, 3.0, 4.0], np.float32)
    np.testing.assert_allclose(losses.hard(S[:, :1], y, regression=True), (S[:, 0] - y) ** 2,
                               rtol=1e-6)


def test_total_mixes_by_alpha_and_only_known_labels_add_to_the_hard_term():
    labels = np.array([0, -1, 1, -1, 2])
    loss, parts = losses.total(S, T, labels, loss="soft_ce", alpha=0.25, temperature=2.0,
                               regression=False)
    distill_part = np.mean(4.0 * -(softmax(T / 2) * np.log(softmax(S / 2))).sum(-1))
    known = labels >= 0  # Summed over the known labels, divided by the whole batch.
    hard_part = np.sum(-np.log(softmax(S)[np.arange(5), np.maximum(labels, 0)])[known]) / 5
    np.testing.assert_allclose(parts["distill"], distill_part, rtol=1e-5)
    np.testing.assert_allclose(parts["hard"], hard_part, rtol=1e-5)
    np.testing.assert_allclose(loss, 0.75 * distill_part + 0.25 * hard_part, rtol=1e-5)


def test_total_regression_ignores_nan_labels():
    labels = np.array([1.0, np.nan, 2.0, np.nan, np.nan], np.float32)
    loss, parts = losses.total(S[:, :1], T[:, :1], labels, loss="mse", temperature=1.0, alpha=0.5,
                               regression=True)
    hard_part = np.sum(((S[:, 0] - np.nan_to_num(labels)) ** 2)[~np.isnan(labels)]) / 5
    np.testing.assert_allclose(parts["hard"], hard_part, rtol=1e-5)
    assert np.isfinite(loss.numpy())


def test_gradient_of_soft_ce_at_t1_is_q_minus_p():
    s = tf.constant(S)
    with tf.GradientTape() as tape:
        tape.watch(s)
        loss = tf.reduce_sum(losses.soft_ce(s, T, 1.0))
    np.testing.assert_allclose(tape.gradient(loss, s), softmax(S) - softmax(T), atol=1e-5)


def test_unknown_loss():
    with pytest.raises(UserError, match="unknown loss 'xent'"):
        losses.get("xent")


def test_hard_term_weighs_each_labeled_example_alike_however_the_batch_is_split():
    """The loss of a batch is the share-weighted sum of its parts' losses (what replicas
    compute), whatever the parts' counts of labeled examples."""
    labels = np.array([0, -1, -1, -1, 2])
    kwargs = dict(loss="soft_ce", temperature=1.0, alpha=0.5, regression=False)
    whole, _ = losses.total(S, T, labels, **kwargs)
    first, _ = losses.total(S[:1], T[:1], labels[:1], **kwargs)  # one labeled example
    rest, _ = losses.total(S[1:], T[1:], labels[1:], **kwargs)  # three unlabeled, one labeled
    np.testing.assert_allclose(whole, first * 1 / 5 + rest * 4 / 5, rtol=1e-6)
