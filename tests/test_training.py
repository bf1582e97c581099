"""The training loop: BERT's schedule, and resume with optimizer state and data position."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from distill import encoders, training


def test_warmup_then_linear_decay():
    lr = training.WarmupLinearDecay(1.0, total_steps=100, warmup_steps=10)
    got = [float(lr(s)) for s in (0, 5, 10, 55, 100, 120)]
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-6)


def test_no_weight_decay_on_layer_norm_and_bias():
    opt = training.adamw(training.Schedule(weight_decay=0.1), 10)
    decayed = tf.Variable(tf.ones([2, 2]), name="dense/kernel")
    for name in ("dense/bias", "encoder/layer_norm/gamma"):
        assert opt._use_weight_decay(tf.Variable(tf.ones([2]), name=name)) is False
    assert opt._use_weight_decay(decayed) is True


def _model():
    keras.utils.set_random_seed(0)
    inputs = {n: keras.Input((None,), dtype=tf.int32, name=n) for n in encoders.INPUT_NAMES}
    x = keras.layers.Embedding(20, 8)(inputs["input_word_ids"])
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def _make_dataset(fail_at=None):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, size=(96, 6)).astype(np.int32)
    labels = (ids[:, 0] > 10).astype(np.int64)
    base = tf.data.Dataset.from_tensor_slices({
        "input_word_ids": ids, "input_mask": np.ones_like(ids), "input_type_ids": np.zeros_like(ids),
        "label": labels})
    seen = {"n": 0}

    def make(epoch):
        def check(batch):
            seen["n"] += 1
            if fail_at is not None and seen["n"] == fail_at:
                raise KeyboardInterrupt("simulated crash")
            return batch
        ds = base.shuffle(96, seed=epoch, reshuffle_each_iteration=False).batch(8)
        return _Wrapped(ds, check)
    return make


class _Wrapped:
    """A dataset stand-in whose iteration can crash after n batches."""

    def __init__(self, ds, check):
        self.ds, self.check = ds, check

    def skip(self, n):
        return _Wrapped(self.ds.skip(n), self.check)

    def __iter__(self):
        for batch in self.ds:
            yield self.check(batch)


def _loss(logits, batch):
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.cast(batch["label"], tf.int32), logits))
    return loss, {"hard": loss}


def test_resume_after_a_crash_ends_with_the_same_weights(tmp_path):
    schedule = training.Schedule(epochs=3, batch_size=8, learning_rate=0.05, checkpoint_every=5)
    straight = _model()
    training.fit(straight, _make_dataset(), 96, _loss, schedule, str(tmp_path / "a"))

    crashed = _model()
    with pytest.raises(KeyboardInterrupt):
        training.fit(crashed, _make_dataset(fail_at=23), 96, _loss, schedule, str(tmp_path / "b"))
    resumed = _model()  # A fresh process would start from fresh weights too.
    summary = training.fit(resumed, _make_dataset(), 96, _loss, schedule, str(tmp_path / "b"))
    assert summary["steps"] == 36 and summary["steps_this_run"] == 36 - 20
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
