"""Our Keras encoder takes the weights of every encoder kind and computes what its SavedModel
computes; what it cannot map runs through hub.KerasLayer, saying why."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras as keras

from conftest import VOCAB
from distill import convert, distribute, encoders, training, weights
from distill.errors import UserError

MODEL_GARDEN = os.path.join(os.path.dirname(__file__), "data", "model_garden")


def probe(vocab_size, seq=12):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, vocab_size, (3, seq)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, seq // 2:] = 0
    mask[2, 3:] = 0
    types = np.zeros_like(ids)
    types[:, seq // 3:] = 1
    return {"input_word_ids": tf.constant(ids), "input_mask": tf.constant(mask),
            "input_type_ids": tf.constant(types)}


def assert_same(native, handle, inputs, atol=1e-5):
    want = hub.KerasLayer(handle)(inputs)
    got = native(inputs, training=False)
    real = inputs["input_mask"].numpy().astype(bool)
    np.testing.assert_allclose(got["pooled_output"], want["pooled_output"], atol=atol)
    np.testing.assert_allclose(np.asarray(got["sequence_output"])[real],
                               np.asarray(want["sequence_output"])[real], atol=atol)
    assert len(got["encoder_outputs"]) == len(want["encoder_outputs"])
    for g, w in zip(got["encoder_outputs"], want["encoder_outputs"]):
        np.testing.assert_allclose(np.asarray(g)[real], np.asarray(w)[real], atol=atol)


def test_our_exports_run_natively(tiny_encoder):
    native = encoders.load(tiny_encoder)
    assert isinstance(native, keras.Model) and native.bert_config.num_layers == 2
    assert_same(native, tiny_encoder, probe(len(VOCAB)))


def test_model_garden_exports_run_natively_with_heads_and_activation_from_the_savedmodel():
    """The fixture was exported by Model Garden's own TF Hub exporter
    (tests/data/make_model_garden.py), the way TF Hub's BERTs were."""
    path = os.path.join(MODEL_GARDEN, "bert")
    native = encoders.load(path)
    assert isinstance(native, keras.Model)
    assert native.bert_config.num_heads == 4  # From the [H, heads, head size] kernels.
    assert native.bert_config.activation == "gelu_approximate"  # Model Garden's "gelu".
    assert_same(native, path, probe(50))


def test_model_garden_mlm_head_runs_natively():
    path = os.path.join(MODEL_GARDEN, "bert")
    loaded = hub.load(path)
    native = encoders.native_from(loaded, path, with_mlm=True)
    inputs = dict(probe(50), masked_lm_positions=tf.constant([[0, 4], [1, 2], [2, 1]]))
    np.testing.assert_allclose(native.mlm(inputs)["mlm_logits"], loaded.mlm(inputs)["mlm_logits"],
                               atol=1e-5)


def test_converted_checkpoints_run_natively(tmp_path):
    from test_convert import write_tf1_checkpoint

    write_tf1_checkpoint(tmp_path / "uncased_L-2_H-16_A-2")
    convert.convert("bert-tf1", str(tmp_path / "uncased_L-2_H-16_A-2"), str(tmp_path / "out"))
    path = str(tmp_path / "out" / "encoder")
    native = encoders.load(path)
    assert isinstance(native, keras.Model)
    assert_same(native, path, probe(len(VOCAB)))


def test_converted_minilm_runs_natively(tmp_path):
    from test_convert import minilm_dir

    convert.convert("hf", minilm_dir(), str(tmp_path / "minilm"))
    path = str(tmp_path / "minilm" / "encoder")
    native = encoders.load(path)
    assert isinstance(native, keras.Model)
    assert_same(native, path, probe(30522, seq=24))


def test_an_encoder_that_does_not_map_runs_through_hub_saying_why(capsys):
    path = os.path.join(MODEL_GARDEN, "projected")  # embedding width 8, hidden 16
    layer = encoders.load(path)
    assert isinstance(layer, hub.KerasLayer)
    assert "runs through hub.KerasLayer: it projects its embeddings" in capsys.readouterr().out
    assert encoders.load(os.path.join(MODEL_GARDEN, "bert"), native=False).__class__ is hub.KerasLayer
    assert capsys.readouterr().out == ""  # Asked for by name: nothing to explain.
    # With `recompute`, both ways to hub.KerasLayer say, in the one form, that it cannot apply.
    encoders.load(path, recompute=True)
    encoders.load(os.path.join(MODEL_GARDEN, "bert"), native=False, recompute=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.endswith("(recompute applies to the native encoder only)") for line in lines] \
        == [True, True]
    assert "hub.KerasLayer: native_encoder: false;" in lines[1]


def test_a_mapping_that_computes_otherwise_is_caught(tiny_encoder, tmp_path, capsys):
    """A wrong activation in bert_config.json: the weights map, the outputs do not."""
    import json
    import shutil

    copy = str(tmp_path / "encoder")
    shutil.copytree(tiny_encoder, copy)
    config_path = os.path.join(copy, "bert_config.json")
    with open(config_path) as f:
        cfg = json.load(f)
    with open(config_path, "w") as f:
        json.dump({**cfg, "activation": "relu"}, f)
    assert isinstance(encoders.load(copy), hub.KerasLayer)
    assert "its outputs differ from the SavedModel's" in capsys.readouterr().out


def test_a_trained_native_encoder_exports_in_the_tf_hub_format(tiny_encoder, tmp_path):
    native = encoders.load(tiny_encoder, seed=0)
    inputs = probe(len(VOCAB))
    optimizer = keras.optimizers.SGD(0.5)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(native(inputs, training=True)["pooled_output"] ** 2)
        grads = tape.gradient(loss, native.trainable_variables)
        optimizer.apply_gradients(zip(grads, native.trainable_variables))
    path = encoders.export_native(native, str(tmp_path / "exported"))
    assert_same(native, path, inputs)
    assert not np.allclose(hub.KerasLayer(path)(inputs)["pooled_output"],
                           hub.KerasLayer(tiny_encoder)(inputs)["pooled_output"], atol=1e-3)


def test_bfloat16_precision_computes_in_bfloat16_with_float32_variables(tiny_encoder,
                                                                        monkeypatch):
    """`precision: bfloat16` (the policy and oneDNN's rewrite) still loads our encoder: its
    check compares float32 with float32 (once it compared with the rewritten SavedModel,
    differed by a bfloat16 rounding and ran every bf16 training through hub.KerasLayer)."""
    monkeypatch.setattr(encoders, "_CHECKED", {})  # Checked afresh, not read from a checkpoint.
    distribute.set_precision("bfloat16")
    try:
        native = encoders.load(tiny_encoder)
        assert isinstance(native, keras.Model)
        assert distribute.rewrite_on()  # Restored after the check.
        out = native(probe(len(VOCAB)), training=False)
        assert out["sequence_output"].dtype == tf.bfloat16
        assert all(v.dtype == tf.float32 for v in native.variables if v.dtype.is_floating)
        want = hub.KerasLayer(tiny_encoder)(probe(len(VOCAB)))["pooled_output"]
        np.testing.assert_allclose(tf.cast(out["pooled_output"], tf.float32), want, atol=0.05)
    finally:
        distribute.set_precision("float32")


def test_under_bfloat16_no_table_or_layer_norm_weight_is_cast_whole():
    """The embedding tables and the layer norms' gamma and beta are read in float32: a
    training step casts no whole table to bfloat16 (rows are gathered, then cast) and no
    layer-norm weight at all (they were rounded to bfloat16 once, and every table cast at
    every step)."""
    cfg = encoders.BertConfig(2, 32, 2, 211, max_position=40)
    distribute.set_precision("bfloat16")
    try:
        model = encoders.build(cfg)
        spec = {n: tf.TensorSpec([None, None], tf.int32) for n in encoders.INPUT_NAMES}
        graph = tf.function(lambda b: model(b, training=True)).get_concrete_function(spec).graph
    finally:
        distribute.set_precision("float32")
    casts = [op for op in graph.get_operations() if op.type == "Cast"]
    assert casts  # The dense layers' kernels are cast: the check sees casts at all.
    tables = {(211, 32), (40, 32), (cfg.type_vocab_size, 32)}
    assert not [op.name for op in casts if tuple(op.outputs[0].shape) in tables]
    assert not [op.name for op in casts if "layer_norm" in op.name
                and op.inputs[0].op.type == "ReadVariableOp"]


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_gelu_for_training_has_the_gradient_and_value_of_gelu(dtype):
    x = tf.cast(tf.random.stateless_normal([4096], seed=[1, 2]) * 3.0, dtype)

    def value_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = encoders.gelu_trained(x)
        return y, tape.gradient(y, x)

    ours, grad = value_and_gradient(x)
    in_graph, graph_grad = tf.function(value_and_gradient)(x)  # As training runs it.
    np.testing.assert_array_equal(in_graph, ours)
    np.testing.assert_allclose(tf.cast(graph_grad, tf.float32), tf.cast(grad, tf.float32),
                               rtol=1e-6, atol=1e-7)
    autodiff = encoders.gelu(x)
    np.testing.assert_array_equal(ours, autodiff)
    x32 = tf.cast(x, tf.float32)
    with tf.GradientTape() as tape32:
        tape32.watch(x32)
        exact = encoders.gelu(x32)
    want = tape32.gradient(exact, x32)
    got = tf.cast(grad, tf.float32)
    tol = 1e-6 if dtype == tf.float32 else 1e-2  # bf16: one rounding of the derivative.
    np.testing.assert_allclose(got, want, atol=tol, rtol=tol)
    assert got.numpy().min() < -0.1 and got.numpy().max() > 1.0  # GELU's dip and overshoot.


@pytest.mark.parametrize("kind", ["ours", "model_garden"])
def test_a_checked_encoder_loads_again_from_its_checkpoint_until_its_files_change(
        kind, tmp_path, vocab_file, monkeypatch):
    """A sweep loads its student once per trial: the SavedModel is restored and probed the
    first time only, the same weights come back in any policy, and a re-export is checked anew."""
    if kind == "ours":
        cfg = encoders.BertConfig(num_layers=2, hidden_size=16, num_heads=2,
                                  vocab_size=len(VOCAB), max_position=64)
        path, vocab = encoders.export_random(str(tmp_path / "enc"), cfg, vocab_file), len(VOCAB)
    else:
        path, vocab = os.path.join(MODEL_GARDEN, "bert"), 50
    monkeypatch.setattr(encoders, "_CHECKED", {})  # Whatever this process loaded before.
    opened = []
    real = encoders.open_saved
    monkeypatch.setattr(encoders, "open_saved", lambda h: opened.append(h) or real(h))
    inputs = probe(vocab)
    first = encoders.load(path)
    again = encoders.load(path, seed=1, name="student")
    assert len(opened) == 1 and again.name == "student"
    assert_same(again, path, inputs)
    for a, b in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        bf16 = encoders.load(path)
        assert bf16(inputs, training=False)["sequence_output"].dtype == tf.bfloat16
        for a, b in zip(first.get_weights(), bf16.get_weights()):
            np.testing.assert_array_equal(a, b)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert len(opened) == 1
    if kind == "ours":  # The same path, other weights: restored and checked again.
        encoders.export_random(path, cfg, vocab_file, seed=7)
        changed = encoders.load(path)
        assert len(opened) == 2
        assert_same(changed, path, inputs)
        assert not np.allclose(changed.get_weights()[0], first.get_weights()[0])


def test_a_checkpoint_of_another_model_is_refused_not_half_restored(tiny_encoder, tmp_path):
    hub_model = keras.Sequential([keras.layers.Dense(3)])
    hub_model.build((None, 2))
    step = tf.Variable(5, dtype=tf.int64)
    tf.train.Checkpoint(model=hub_model, step=step).save(str(tmp_path / "ckpts" / "ckpt"))
    native = encoders.load(tiny_encoder)
    ckpt = tf.train.Checkpoint(model=native, step=tf.Variable(0, dtype=tf.int64))
    with pytest.raises(UserError, match="written by a differently built model"):
        training.restore(ckpt, str(tmp_path / "ckpts"), ckpt.step, "distill")


def test_names_of_every_layout_are_distinct_and_complete():
    rows = weights.mapping(2, True)
    for layout in weights.LAYOUTS:
        names = [r.name(layout) for r in rows]
        assert len(set(names)) == len(names), layout
    assert len(rows) == 5 + 2 * 16 + 2 + 5


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_recomputed_blocks_give_the_same_gradients_with_dropout_on(tiny_encoder, policy):
    """`recompute` draws each block's dropout seeds before the block, so the backward pass's
    second forward pass drops the same units: the gradients are those of the plain encoder
    (same seed, same masks), and the gradient graph really runs the blocks' matmuls again."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        plain, recomputed = (encoders.load(tiny_encoder, seed=3, recompute=r) for r in (False, True))
        inputs = probe(len(VOCAB))
        # A loss along fixed random directions: the squared norm of a layer-normed output is
        # constant, its gradient pure rounding (which bf16 makes large).
        directions = {k: tf.random.stateless_normal(tf.shape(v), seed=[i, 1])
                      for i, (k, v) in enumerate(plain(inputs).items()) if k != "encoder_outputs"}

        def grads_of(model, training=True):
            @tf.function
            def step(inputs):
                with tf.GradientTape() as tape:
                    out = model(inputs, training=training)
                    loss = sum(tf.reduce_sum(tf.cast(out[k], tf.float32) * directions[k])
                               for k in directions)
                return tape.gradient(loss, model.trainable_variables)

            matmuls = sum(op.type in ("MatMul", "BatchMatMulV2", "Einsum", "_MklMatMul")
                          for op in step.get_concrete_function(inputs).graph.get_operations())
            return [tf.convert_to_tensor(g).numpy() for g in step(inputs)], matmuls

        want, plain_matmuls = grads_of(plain)
        got, recomputed_matmuls = grads_of(recomputed)
        for w, g, v in zip(want, got, plain.trainable_variables):
            if policy == "float32":
                np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5, err_msg=v.name)
            else:  # bf16 roundings, summed in another order: near as a whole, not elementwise.
                assert np.linalg.norm(g - w) <= 2e-2 * np.linalg.norm(w) + 1e-4, v.name  # key bias: 0
        assert recomputed_matmuls > plain_matmuls
        without_dropout, _ = grads_of(plain, training=False)  # The masks did drop units.
        assert not all(np.allclose(a, b, atol=1e-3) for a, b in zip(want, without_dropout))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def random_classifier(encoder_path, path, native=True, written_before=False):
    """A classifier over `encoder_path` with a random head large enough to separate logits,
    exported as the stages export theirs (`written_before`: without the encoder's sizes in
    classifier.json, as before 2026-12-05)."""
    import json

    from distill import models

    model = models.build(encoder_path, 3, dropout=0.0, native=native)
    kernel = model.get_layer(models.HEAD).kernel
    kernel.assign(10.0 * tf.random.stateless_normal(kernel.shape, seed=[4, 2]))
    path = models.export(model, str(path), {"task": "mnli", "encoder": encoder_path})
    if written_before:
        meta = models.metadata(path)
        del meta["bert_config"]
        with open(os.path.join(path, models.META), "w") as f:
            json.dump(meta, f)
    return path


@pytest.mark.parametrize("kind", ["native", "native_written_before", "hub_model_garden",
                                  "converted_minilm"])
def test_a_classifier_loads_natively_and_computes_what_its_signature_computes(kind, tiny_encoder,
                                                                               tmp_path, capsys):
    """Teachers and labeling load classifiers as our Keras model: one exported from our encoder
    and one over converted MiniLM weights (their sizes in classifier.json), one built over a
    Model Garden SavedModel through hub.KerasLayer (sizes from its weights and graph), and one
    of ours written before classifier.json had its sizes (its encoder's config)."""
    from distill import models

    if kind.startswith("native"):
        encoder, vocab = tiny_encoder, len(VOCAB)
    elif kind == "hub_model_garden":
        encoder, vocab = os.path.join(MODEL_GARDEN, "bert"), 50
    else:
        from test_convert import minilm_dir
        convert.convert("hf", minilm_dir(), str(tmp_path / "minilm"))
        encoder, vocab = str(tmp_path / "minilm" / "encoder"), 30522
    path = random_classifier(encoder, tmp_path / "classifier", native=kind != "hub_model_garden",
                             written_before=kind == "native_written_before")
    assert ("bert_config" in models.metadata(path)) == (kind in ("native", "converted_minilm"))
    fn, meta = models.load(path)
    assert meta["task"] == "mnli" and isinstance(fn.model, keras.Model)
    assert capsys.readouterr().out == ""
    inputs = probe(vocab, seq=16)
    want = models.signature(path)(inputs).numpy()
    assert np.abs(want).max() > 0.5  # Logits that tell a wrong head from the right one.
    # Within 1e-5 of the logits' scale (float32 sums of a head that makes them large).
    tolerance = 1e-5 * max(1.0, float(np.abs(want).max()))
    assert np.abs(fn(inputs).numpy() - want).max() <= tolerance
    # Another batch shape runs through the same trace.
    short = {k: v[:2, :7] for k, v in inputs.items()}
    assert np.abs(fn(short).numpy() - models.signature(path)(short).numpy()).max() <= tolerance


def test_a_classifier_that_does_not_map_runs_its_signature_saying_why(tmp_path, capsys):
    from distill import models

    path = random_classifier(os.path.join(MODEL_GARDEN, "projected"), tmp_path / "classifier")
    capsys.readouterr()
    fn, _ = models.load(path)
    line = capsys.readouterr().out
    assert line.startswith(f"[classifier] {path} runs its serving signature: ")
    assert "projects its embeddings" in line
    assert not hasattr(fn, "model")
    inputs = probe(50)
    np.testing.assert_array_equal(fn(inputs), models.signature(path)(inputs))


def test_an_old_classifier_whose_encoder_is_gone_runs_its_signature(tiny_encoder, tmp_path,
                                                                   capsys):
    """Written before classifier.json had the encoder's sizes, its encoder no longer where it
    was: nothing tells the number of heads."""
    import shutil

    from distill import models

    encoder = str(tmp_path / "encoder")
    shutil.copytree(tiny_encoder, encoder)
    path = random_classifier(encoder, tmp_path / "classifier", written_before=True)
    shutil.rmtree(encoder)
    capsys.readouterr()
    fn, _ = models.load(path)
    assert "no bert_config.json says its number of attention heads" in capsys.readouterr().out
    inputs = probe(len(VOCAB))
    np.testing.assert_array_equal(fn(inputs), models.signature(path)(inputs))


def test_a_classifier_under_bfloat16_keeps_its_weights_in_bfloat16(tiny_encoder, tmp_path):
    """Labeling in bf16: the classifier's encoder weights are stored in bf16 (no cast of every
    kernel at every batch), its logits stay float32 and near the float32 model's."""
    from distill import models

    path = random_classifier(tiny_encoder, tmp_path / "classifier")
    inputs = probe(len(VOCAB))
    want = models.load(path)[0](inputs).numpy()
    distribute.set_precision("bfloat16")
    try:
        fn, _ = models.load(path)
        got = fn(inputs)
    finally:
        distribute.set_precision("float32")
    kernels = [v for v in fn.model.variables if "kernel" in v.name]
    assert kernels and all(v.dtype == tf.bfloat16 for v in kernels
                           if not v.name.startswith(models.HEAD))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())
    assert not np.array_equal(got, want)  # It did compute in bf16.


def test_a_classifier_trained_in_bfloat16_loads_natively(tiny_encoder, tmp_path, capsys):
    """Exported under `precision: bfloat16`, its serving graph computes in bf16: ours (float32)
    is checked against it at bf16's precision, not float32's (each such teacher and student
    once ran its signature instead, found on real SST-2)."""
    from distill import models

    distribute.set_precision("bfloat16")
    try:
        path = random_classifier(tiny_encoder, tmp_path / "classifier")
    finally:
        distribute.set_precision("float32")
    assert models.metadata(path)["compute_dtype"] == "bfloat16"
    capsys.readouterr()
    fn, _ = models.load(path)
    assert capsys.readouterr().out == "" and isinstance(fn.model, keras.Model)
    inputs = probe(len(VOCAB))
    want = models.signature(path)(inputs).numpy()
    gap = np.abs(fn(inputs).numpy() - want).max()
    assert 0 < gap <= 2e-2 * np.abs(want).max()
