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


def _make_dataset(fail_at=None, vocab=20):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, vocab, size=(96, 6)).astype(np.int32)
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


def test_the_score_after_each_epoch_is_kept_across_a_resume(tmp_path):
    """`evaluate` runs before training and after each epoch; a crashed run's scored epochs are
    not scored again."""
    schedule = training.Schedule(epochs=3, batch_size=8, learning_rate=0.05, checkpoint_every=5)
    calls = []

    def evaluate():
        calls.append(1)
        return {"split": "validation", "score": float(len(calls))}

    crashed = _model()
    with pytest.raises(KeyboardInterrupt):  # In the second epoch (12 steps an epoch).
        training.fit(crashed, _make_dataset(fail_at=17), 96, _loss, schedule, str(tmp_path),
                     evaluate=evaluate)
    assert len(calls) == 2
    summary = training.fit(_model(), _make_dataset(), 96, _loss, schedule, str(tmp_path),
                           evaluate=evaluate)
    assert [(r["epoch"], r["step"], r["score"]) for r in summary["epochs"]] == [
        (0, 0, 1.0), (1, 12, 2.0), (2, 24, 3.0), (3, 36, 4.0)]
    assert len(calls) == 4


def test_shuffled_batches_come_from_length_sorted_windows(vocab_file):
    from distill import text

    words = ["good", "bad", "movie", "very", "not", "the"]
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 40))) for _ in range(1000)]
    ds = tf.data.Dataset.from_tensor_slices({"text_a": texts, "text_b": [""] * 1000,
                                             "label": np.arange(1000)})
    encoder = text.Packer(text.load(vocab_file), 64)

    def epoch(seed, multiple=1):
        return list(training.batches(ds, encoder, 16, shuffle_seed=seed, sort_window=16,
                                     multiple=multiple).as_numpy_iterator())

    batches = epoch(3)
    assert len(batches) == training.steps_per_epoch(1000, 16) == 63
    assert sorted(np.concatenate([b["label"] for b in batches])) == list(range(1000))
    assert all(b["input_mask"][:, -1].any() for b in batches)  # Each to its own longest.
    assert all(b["input_word_ids"].shape[1] % 8 == 0 for b in epoch(3, multiple=8))
    again = epoch(3)
    assert all((a["label"] == b["label"]).all() for a, b in zip(batches, again))  # For resume.
    padded = sum(b["input_mask"].size for b in batches)
    real = sum(int(b["input_mask"].sum()) for b in batches)
    unsorted = ds.shuffle(10_000, seed=3).batch(16).map(encoder)
    padded_unsorted = sum(int(tf.size(b["input_mask"])) for b in unsorted)
    assert padded < 0.7 * padded_unsorted and padded < 1.1 * real  # Sorted by word pieces.


def test_xla_compiled_steps_train_like_plain_ones(tmp_path):
    schedule = training.Schedule(epochs=1, batch_size=8, learning_rate=0.05, checkpoint_every=100)
    plain = _model()
    training.fit(plain, _make_dataset(), 96, _loss, schedule, str(tmp_path / "plain"))
    compiled = _model()
    schedule.jit_compile = True
    training.fit(compiled, _make_dataset(), 96, _loss, schedule, str(tmp_path / "xla"))
    for a, b in zip(plain.weights, compiled.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_gradients_are_clipped_to_their_global_norm():
    def first_moment(clip_norm):
        v = tf.Variable([0.0, 0.0], name="kernel")
        opt = training.adamw(training.Schedule(learning_rate=1e-3, warmup=0.0, weight_decay=0.0,
                                               clip_norm=clip_norm), total_steps=10)
        opt.apply_gradients([(tf.constant([30.0, 40.0]), v)])  # Global norm 50.
        return opt._momentums[0].numpy()  # Adam's m after one step: 0.1 * the applied gradient.

    np.testing.assert_allclose(first_moment(1.0), [0.06, 0.08], rtol=1e-5)
    np.testing.assert_allclose(first_moment(0.0), [3.0, 4.0], rtol=1e-5)  # 0 turns it off.
    np.testing.assert_allclose(first_moment(80.0), [3.0, 4.0], rtol=1e-5)  # Below the limit.


def _adamw_reference(params, grads_per_step, lr, wd, decay_mask, b1=0.9, b2=0.999, eps=1e-6,
                     clip_norm=0.0):
    """AdamW in NumPy: the gradients clipped to a global norm (if `clip_norm`), decoupled
    decay, then Adam with Keras' epsilon placement."""
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        norm = np.sqrt(sum((g * g).sum() for g in grads))
        if clip_norm and norm > clip_norm:
            grads = [g * clip_norm / norm for g in grads]
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for i, g in enumerate(grads):
            if decay_mask[i]:
                params[i] -= params[i] * lr * wd
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            params[i] -= alpha * m[i] / (np.sqrt(v[i]) + eps)
    return params


@pytest.mark.parametrize("clip_norm", [0.0, 1e3, 0.5])  # Off, never reached, every step.
def test_fused_adamw_is_adamw_also_for_embedding_rows_seen_twice(clip_norm):
    keras.utils.set_random_seed(0)
    table = tf.Variable(tf.random.normal([10, 4]), name="word_embeddings/embeddings")
    bias = tf.Variable(tf.random.normal([4]), name="dense/bias")
    start = [table.numpy(), bias.numpy()]
    opt = training.adamw(training.Schedule(learning_rate=1e-2, warmup=0.0, weight_decay=0.1,
                                           clip_norm=clip_norm), total_steps=10 ** 6)
    ids = tf.constant([[1, 2, 1, 1], [3, 1, 2, 9]])  # Row 1 four times, row 2 twice.
    seen = []
    for step in range(5):
        with tf.GradientTape() as tape:
            x = tf.gather(table, ids) + bias
            loss = tf.reduce_sum(tf.sin(x * (step + 1.0)))
        grads = tape.gradient(loss, [table, bias])
        assert isinstance(grads[0], tf.IndexedSlices)  # The sparse path is what is tested.
        seen.append([tf.convert_to_tensor(g).numpy().astype(np.float64) for g in grads])
        opt.apply_gradients(zip(grads, [table, bias]))
    # The schedule's decay over 5 of 10^6 steps (5e-6 relative) is within the tolerance.
    if clip_norm == 0.5:  # The clip is what this case tests: it must act at every step.
        assert min(np.sqrt(sum((g * g).sum() for g in grads)) for grads in seen) > 0.5
    want = _adamw_reference(start, seen, 1e-2, 0.1, decay_mask=[True, False],
                            clip_norm=clip_norm)
    np.testing.assert_allclose(table.numpy(), want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bias.numpy(), want[1], rtol=1e-5, atol=1e-5)


def test_fused_adamw_trains_like_keras_adamw_on_dense_gradients():
    def train(optimizer_class):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(2)])
        x = tf.random.stateless_normal([32, 8], seed=[1, 2])
        y = tf.random.stateless_normal([32, 2], seed=[3, 4])
        model(x)
        opt = optimizer_class(learning_rate=1e-2, weight_decay=0.01, epsilon=1e-6,
                              global_clipnorm=1.0)
        for _ in range(20):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((model(x) - y) ** 2)
            opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                    model.trainable_variables))
        return [w.numpy() for w in model.weights], [s.numpy() for s in opt.variables]

    ours, ours_slots = train(training.AdamW)
    theirs, their_slots = train(keras.optimizers.AdamW)
    for a, b in zip(ours + ours_slots, theirs + their_slots):  # fp32 rounding over 20 steps.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_bf16_rewrite_is_on_while_training_only_a_graph_the_policy_cannot_reach(
        tmp_path, tiny_encoder):
    """Under `precision: bfloat16`, oneDNN's rewrite stays on for a model holding a
    hub.KerasLayer and goes off for one the mixed_bfloat16 policy casts itself; restored after."""
    from conftest import VOCAB
    from distill import distribute, models

    schedule = training.Schedule(epochs=1, batch_size=8, learning_rate=0.05)
    seen = []

    def evaluate():
        seen.append(distribute.rewrite_on())
        return {"split": "validation", "score": 0.0}

    distribute.set_precision("bfloat16")
    try:
        for k, model in enumerate([_model(), models.build(tiny_encoder, 2, 0.1, native=False)]):
            training.fit(model, _make_dataset(vocab=len(VOCAB)), 16,
                         lambda logits, batch: _loss(tf.cast(logits, tf.float32), batch),
                         schedule, str(tmp_path / str(k)), evaluate=evaluate)
            assert distribute.rewrite_on()
    finally:
        distribute.set_precision("float32")
    assert seen == [False, False, True, True]  # Before the first step and after the epoch.


def test_a_dropped_training_step_leaves_nothing_alive(tiny_encoder):
    """A fit's traced step, and the optimizer slots and model it captures, go when the fit
    does. TensorFlow's `all_reduce` and `tf.custom_gradient` register a gradient per trace in
    a process-wide registry that kept every traced step alive: a sweep's trials leaked their
    optimizer's slots and their whole student, one after the other (about 500 MiB a trial
    at L-12 H-512)."""
    import gc
    import weakref

    from tensorflow.python.framework import func_graph
    from distill import models

    def steps_alive():
        gc.collect()
        return sum(isinstance(o, func_graph.FuncGraph) and o.name == "step"
                   for o in gc.get_objects())

    from conftest import VOCAB

    batch = next(iter(_make_dataset(vocab=len(VOCAB))(0)))
    before = steps_alive()

    def train_once():
        model = models.build(tiny_encoder, 2, dropout=0.1)  # Our encoder: GELU, dropout.
        schedule = training.Schedule(learning_rate=1e-3)
        optimizer = training.adamw(schedule, 10)
        optimizer.build(model.trainable_variables)
        step = training.build_step(model, optimizer, _loss, schedule, encoders.INPUT_NAMES)
        step(batch)
        return weakref.ref(optimizer._velocities[0]), weakref.ref(model)

    refs = train_once()
    assert steps_alive() == before
    assert all(r() is None for r in refs)


def test_a_fit_frees_what_earlier_stages_and_its_own_optimizer_left(tiny_encoder, tmp_path,
                                                                     monkeypatch):
    """A traced function refers to itself in cycles, and it holds the variables it captures:
    a labeling function the teacher's weights, a training step the optimizer's slots. Python
    frees cycles only at a full collection, which comes by object count, not by size, so the
    next stage allocated while they still held their memory (an L-12 H-512 student's second
    fit peaked at 3,478 MiB, 2,947 with the collections). Python's own collections are off
    here: only `fit` can free them (it collects for models of any size here)."""
    import gc
    import weakref

    from conftest import VOCAB
    from distill import models

    slots = []
    real_adamw = training.adamw

    def adamw(*args):
        optimizer = real_adamw(*args)
        build = optimizer.build

        def build_and_look(variables):
            build(variables)
            slots.append(weakref.ref(optimizer._velocities[0]))

        optimizer.build = build_and_look
        return optimizer

    monkeypatch.setattr(training, "adamw", adamw)
    monkeypatch.setattr(training, "COLLECT_FROM_BYTES", 0)
    make = _make_dataset(vocab=len(VOCAB))
    batch = next(iter(make(0)))
    seen_by_training = []

    def make_and_look(epoch):
        seen_by_training.append(teacher_weight() is None)
        return make(epoch)

    gc.collect()
    gc.disable()
    try:
        teacher = models.build(tiny_encoder, 2, dropout=0.1)
        label = tf.function(lambda b: teacher({n: b[n] for n in encoders.INPUT_NAMES}))
        label(batch)
        teacher_weight = weakref.ref(teacher.trainable_variables[0])
        del teacher, label
        assert teacher_weight() is not None  # Held by the traced function's cycles.
        model = models.build(tiny_encoder, 2, dropout=0.1)
        training.fit(model, make_and_look, 16, _loss,
                     training.Schedule(epochs=1, batch_size=8, checkpoint_every=100),
                     str(tmp_path))
        assert seen_by_training == [True]  # Freed before this fit allocated anything.
        assert slots and slots[0]() is None  # This fit's slots, once it returned.
    finally:
        gc.enable()
