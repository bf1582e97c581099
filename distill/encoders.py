"""BERT encoders in the TF Hub encoder format: build, export and load.

`load(handle)` is the one way the pipeline gets an encoder: a TF Hub handle or a
local SavedModel directory, whose weights go into our own Keras encoder where they map
(`distill/weights.py`: our exports, TF Hub's Model Garden BERTs, converted checkpoints),
checked against the SavedModel's outputs, and through `hub.KerasLayer` where they do not.
`build` and `export` make a BERT encoder (Devlin et al. 2019, Sec. 3) of any
(L, H, A, vocab) and save it with the same API as the hub encoders:

    inputs  {input_word_ids, input_mask, input_type_ids}: int32 [batch, seq]
    outputs {pooled_output, sequence_output, encoder_outputs, default}
    .mlm    the same inputs plus masked_lm_positions -> outputs plus mlm_logits

so that tests and the demo load locally built encoders by exactly the code path
a real handle takes.

    python -c "from distill import encoders; encoders.export_random('/tmp/enc', \
        encoders.BertConfig(num_layers=2, hidden_size=128, num_heads=2), 'vocab.txt')"
"""
from __future__ import annotations

import dataclasses
import json
import os

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tf_keras as keras
import tensorflow_hub as hub
from tensorflow.python.eager import record  # The tape's record of one op (`gelu_trained`).

from distill import distribute, handles, rundir, weights
from distill.errors import UserError
from distill.text import INPUT_NAMES  # A preprocessor's outputs are the encoder's inputs.
INIT_STDDEV = 0.02  # BERT's truncated-normal initializer (Devlin et al. 2019, its code).


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """BERT hyperparameters; defaults follow BERT-Base except the size."""

    num_layers: int = 2
    hidden_size: int = 128
    num_heads: int = 2
    vocab_size: int = 30522
    intermediate_size: int | None = None  # 4 * hidden_size when None, as in BERT.
    max_position: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    initializer_range: float = INIT_STDDEV
    activation: str = "gelu"  # "gelu" (exact, as BERT), "gelu_approximate" or "relu".

    @property
    def intermediate(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    def __post_init__(self):
        if self.activation not in _ACTIVATIONS:
            raise UserError(f"activation {self.activation!r}: expected one of {sorted(_ACTIVATIONS)}.")
        if self.hidden_size % self.num_heads:
            raise UserError(
                f"hidden_size must be a multiple of num_heads; "
                f"received hidden_size={self.hidden_size}, num_heads={self.num_heads}.")


def _dense(units, name, cfg, activation=None, dtype=None):
    init = keras.initializers.TruncatedNormal(stddev=cfg.initializer_range)
    return keras.layers.Dense(units, activation=activation, kernel_initializer=init, name=name,
                              dtype=dtype)


def _layer_norm(name, dtype=None):
    return LayerNorm(name=name, dtype=dtype)


def _dropout(rate, seed, dtype):
    # Seeded from the run's seed (0 when none is given), so the same command drops the same units.
    return CheckpointedDropout(rate, seed or 0, dtype=dtype)


_portable = False  # True while `save` traces.


def gelu(x):
    """Exact GELU, x * Phi(x), written as the Erf form that oneDNN's graph rewrite fuses into
    the matmul before it (with its bias) when nothing else reads the steps in between
    (inference); `tf.nn.gelu`'s Erfc form is not fused there. Graphs traced by `save` use
    `tf.nn.gelu`, which TFLite converts to its GELU op (it has no Erf)."""
    if _portable:
        return tf.nn.gelu(x, approximate=False)
    return ((tf.math.erf(x * 0.7071067811865476) + 1.0) * 0.5) * x


def save(obj, path: str, **kwargs) -> None:
    """`tf.saved_model.save` with every graph traced in the portable ops (`gelu`): a
    SavedModel is read by others (hub.KerasLayer, the TFLite converter), not only by us."""
    global _portable
    _portable = True
    try:
        tf.saved_model.save(obj, path, **kwargs)
    finally:
        _portable = False


def _gelu_derivative(x, dtype):
    """Phi(x) + x * phi(x), computed in float32, in `dtype`."""
    x32 = tf.cast(x, tf.float32)
    cdf = (tf.math.erf(x32 * 0.7071067811865476) + 1.0) * 0.5
    pdf = tf.exp(-0.5 * tf.square(x32)) * 0.3989422804014327  # 1 / sqrt(2 pi)
    return tf.cast(cdf + x32 * pdf, dtype)


def gelu_trained(x):
    """`gelu` whose backward pass keeps only its input and computes its derivative again:
    autodiff of `gelu` keeps three tensors of the intermediate layer's size for each block
    (420 MiB of an L-12 H-512 student's peak). Its gradient is recorded on the tape the way
    `tf.custom_gradient` records one, without the gradient that decorator also registers, in
    a graph, in a process-wide registry at every trace: that entry keeps each traced
    training step, and the variables it captures, alive as long as the process. Graphs
    traced by `save` use `gelu` (their readers need no gradient of ours)."""
    if _portable:
        return gelu(x)
    y = tf.identity(gelu(x))
    record.record_operation("GeluTrained", [y], [x],
                            lambda dy: [dy * _gelu_derivative(x, dy.dtype)])
    return y


_ACTIVATIONS = {
    "gelu": gelu,
    "gelu_approximate": lambda x: tf.nn.gelu(x, approximate=True),
    "relu": tf.nn.relu,
}
_TRAINED = {"gelu": gelu_trained}  # Where training has its own form of an activation.


class LayerNorm(keras.layers.Layer):
    """Layer normalization over the last axis (epsilon 1e-12, as BERT), computed in float32
    whatever the policy, as `centered * (rsqrt(variance) * gamma) + beta`: one multiplication
    over the activations, where Keras' layer (`moments`, then `batch_normalization`) does more.
    In a bf16 labeling profile its steps took 10% less of the op time (benchmarks/RESULTS.md).
    Its weights are `gamma` and `beta`, as Keras'.
    """

    def __init__(self, **kwargs):
        super().__init__(autocast=False, **kwargs)  # Reads its weights in float32.

    def build(self, input_shape):
        size = input_shape[-1]
        # Not autocast: read whole in float32 (a layer's policy would round them to bf16).
        self.gamma = self.add_weight("gamma", [size], initializer="ones",
                                     experimental_autocast=False)
        self.beta = self.add_weight("beta", [size], initializer="zeros",
                                    experimental_autocast=False)
        super().build(input_shape)

    def call(self, x):
        x32 = tf.cast(x, tf.float32)
        centered = x32 - tf.reduce_mean(x32, axis=-1, keepdims=True)
        variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
        scale = tf.math.rsqrt(variance + 1e-12) * tf.cast(self.gamma, tf.float32)
        return tf.cast(tf.cast(self.beta, tf.float32) + centered * scale, x.dtype)


class CheckpointedDropout(keras.layers.Layer):
    """Dropout whose random state is a variable made at construction, hence in every checkpoint.

    A run resumed from a checkpoint then draws the masks an uninterrupted run would
    (Keras' own Dropout makes its generator lazily, after a checkpoint is restored, so a
    resumed run would draw other masks). The encoder and the classifier head use it.
    """

    def __init__(self, rate: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.generator = tf.random.Generator.from_seed(seed)

    def call(self, x, training=None, seed=None):
        """`seed`: a stateless seed drawn earlier from `self.generator` (`make_seeds`), for a
        block that runs twice (`TransformerLayer`'s recomputation) and must drop the same units."""
        if not training or self.rate == 0:
            return x
        if seed is None:
            seed = self.generator.make_seeds(1)[:, 0]
        return tf.nn.experimental.stateless_dropout(x, self.rate, seed)


class Embeddings(keras.layers.Layer):
    """Word + position + token-type embeddings, then LayerNorm and dropout.

    The tables are read whole (a free alias of the variable) and their rows gathered from
    that: a gather from the variable itself (ResourceGather) switches it to copy-on-read, so
    that every later read and update of the table copies it first (a quarter of an L-4 H-256
    student's step on a CPU, benchmarks/RESULTS.md). Rows are summed in float32, then cast
    to the compute dtype once: the tables are not autocast (a mixed policy would cast each
    whole table at every step, 3% of a bf16 L-4 H-256 student's step).
    """

    def __init__(self, cfg: BertConfig, seed: int | None = None, **kwargs):
        super().__init__(autocast=False, **kwargs)
        self.cfg = cfg
        self.norm = _layer_norm("layer_norm", self.dtype_policy)
        self.dropout = _dropout(cfg.dropout, seed, self.dtype_policy)

    def build(self, input_shape):
        def table(name, rows):
            init = keras.initializers.TruncatedNormal(stddev=self.cfg.initializer_range)
            return self.add_weight(name, [rows, self.cfg.hidden_size], initializer=init,
                                   experimental_autocast=False)

        self.word_embeddings = table("word_embeddings", self.cfg.vocab_size)
        self.position_embeddings = table("position_embeddings", self.cfg.max_position)
        self.type_embeddings = table("type_embeddings", self.cfg.type_vocab_size)
        super().build(input_shape)

    def call(self, word_ids, type_ids, training=None):
        seq_len = tf.shape(word_ids)[1]
        x = tf.gather(tf.convert_to_tensor(self.word_embeddings), word_ids)
        x += tf.gather(tf.convert_to_tensor(self.type_embeddings), type_ids)
        x += tf.convert_to_tensor(self.position_embeddings)[tf.newaxis, :seq_len]
        return self.dropout(self.norm(tf.cast(x, self.compute_dtype)), training=training)


class TransformerLayer(keras.layers.Layer):
    """One post-LayerNorm Transformer block (Vaswani et al. 2017), as BERT uses it.

    Under a mixed-precision policy the matmuls and elementwise ops run in the compute dtype
    (bfloat16) and the softmax in float32; variables are float32 either way. With `recompute`
    its training-time activations are not kept for the backward pass but computed again there
    (`tf.recompute_grad`): less memory for one more forward pass of the block.
    """

    def __init__(self, cfg: BertConfig, seed: int | None = None, recompute: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.recompute = recompute
        self.heads, self.head_size = cfg.num_heads, cfg.hidden_size // cfg.num_heads
        h, policy = cfg.hidden_size, self.dtype_policy
        self.query, self.key, self.value = (_dense(h, n, cfg, dtype=policy)
                                            for n in ("query", "key", "value"))
        self.attention_output = _dense(h, "attention_output", cfg, dtype=policy)
        self.attention_norm = _layer_norm("attention_layer_norm", policy)
        # Its activation is applied in `call`: training uses `gelu_trained` for GELU.
        self.intermediate = _dense(cfg.intermediate, "intermediate", cfg, dtype=policy)
        self.activation = _ACTIVATIONS[cfg.activation]
        self.trained_activation = _TRAINED.get(cfg.activation, self.activation)
        self.output_dense = _dense(h, "output", cfg, dtype=policy)
        self.output_norm = _layer_norm("output_layer_norm", policy)
        self.dropout = _dropout(cfg.dropout, seed, policy)

    def call(self, x, mask_bias, training=None):
        # The block's three dropout seeds are drawn before it runs, so that its recomputation
        # in the backward pass drops the units its forward pass dropped.
        seeds = self.dropout.generator.make_seeds(3) if training else None

        def block(x):
            def drop(y, k):
                return self.dropout(y, training=training,
                                    seed=None if seeds is None else seeds[:, k])

            # The dense layers see [tokens, hidden]: on 2-D inputs each is one MatMul with its
            # bias (and GELU) fused by oneDNN's graph rewrite; on 3-D ones Keras reshapes
            # between the MatMul and the BiasAdd, which stops the fusion.
            shape = tf.shape(x)
            tokens = tf.reshape(x, [-1, x.shape[-1]])
            heads = [shape[0], shape[1], self.heads, self.head_size]
            q, k, v = (tf.reshape(f(tokens), heads) for f in (self.query, self.key, self.value))
            scores = tf.einsum("bthd,bshd->bhts", q * (self.head_size ** -0.5), k)
            probs = tf.nn.softmax(tf.cast(scores, tf.float32) + mask_bias, axis=-1)
            context = tf.einsum("bhts,bshd->bthd", drop(tf.cast(probs, q.dtype), 0), v)
            context = tf.reshape(context, tf.shape(tokens))
            tokens = self.attention_norm(tokens + drop(self.attention_output(context), 1))
            act = self.trained_activation if training else self.activation
            y = self.output_dense(act(self.intermediate(tokens)))
            return tf.reshape(self.output_norm(tokens + drop(y, 2)), shape)

        return tf.recompute_grad(block)(x) if training and self.recompute else block(x)


class MaskedLMHead(keras.layers.Layer):
    """BERT's MLM head: transform, LayerNorm, then logits tied to the word embeddings."""

    def __init__(self, cfg: BertConfig, embeddings: Embeddings, **kwargs):
        super().__init__(**kwargs)
        self.embeddings = embeddings
        self.transform = _dense(cfg.hidden_size, "transform", cfg,
                                activation=_ACTIVATIONS[cfg.activation], dtype=self.dtype_policy)
        self.norm = _layer_norm("layer_norm", self.dtype_policy)
        self.vocab_size = cfg.vocab_size

    def build(self, input_shape):
        self.output_bias = self.add_weight("output_bias", [self.vocab_size], initializer="zeros")
        super().build(input_shape)

    def call(self, sequence_output, positions):
        x = tf.gather(sequence_output, positions, batch_dims=1)
        x = self.norm(self.transform(x))
        table = tf.cast(self.embeddings.word_embeddings, x.dtype)  # Not autocast (`Embeddings`).
        return tf.matmul(x, table, transpose_b=True) + self.output_bias


def _mask_bias(input_mask):
    """[batch, seq] 0/1 mask -> additive attention bias [batch, 1, 1, seq]."""
    return (1.0 - tf.cast(input_mask, tf.float32))[:, tf.newaxis, tf.newaxis, :] * -1e9


def build(cfg: BertConfig, with_mlm: bool = True, seed: int | None = None,
          dtype: str | None = None, name: str = "bert_encoder",
          recompute: bool = False) -> keras.Model:
    """Builds a BERT encoder as a Keras model with the TF Hub encoder API, `.mlm` attached.

    `seed` seeds its dropout; `dtype` overrides the global mixed-precision policy;
    `recompute` recomputes each Transformer block's activations in the backward pass.
    """
    def seeded(k):
        return None if seed is None else seed + k

    inputs = {n: keras.Input((None,), dtype=tf.int32, name=n) for n in INPUT_NAMES}
    embeddings = Embeddings(cfg, seed=seeded(0), name="embeddings", dtype=dtype)
    x = embeddings(inputs["input_word_ids"], inputs["input_type_ids"])
    bias = keras.layers.Lambda(_mask_bias, name="attention_mask", dtype="float32")(
        inputs["input_mask"])
    layer_outputs = []
    for i in range(cfg.num_layers):
        x = TransformerLayer(cfg, seed=seeded(1 + i), recompute=recompute,
                             name=f"transformer/layer_{i}", dtype=dtype)(x, bias)
        layer_outputs.append(x)
    first_token = keras.layers.Lambda(lambda s: s[:, 0], name="first_token", dtype=dtype)(x)
    pooled = _dense(cfg.hidden_size, "pooler", cfg, activation="tanh", dtype=dtype)(first_token)
    outputs = dict(sequence_output=x, pooled_output=pooled, encoder_outputs=layer_outputs,
                   default=pooled)
    core = keras.Model(inputs, outputs, name=name)
    if not with_mlm:
        return core

    mlm_inputs = dict(inputs, masked_lm_positions=keras.Input((None,), dtype=tf.int32,
                                                                   name="masked_lm_positions"))
    core_outputs = core({n: mlm_inputs[n] for n in INPUT_NAMES})
    mlm_logits = MaskedLMHead(cfg, embeddings, name="mlm", dtype=dtype)(
        core_outputs["sequence_output"], mlm_inputs["masked_lm_positions"])
    mlm = keras.Model(mlm_inputs, dict(core_outputs, mlm_logits=mlm_logits), name="bert_mlm")
    # Keep the MLM head's weights out of the core encoder's variables, as the hub
    # encoders do: fine-tuning `core` must not carry the unused head.
    core._auto_track_sub_layers = False  # pylint: disable=protected-access
    core.mlm = mlm
    return core


def export(model: keras.Model, path: str, vocab_file: str, lower_case: bool = True,
           config: BertConfig | None = None) -> str:
    """Saves `model` (from `build`) as a TF Hub-format encoder SavedModel at `path`.

    The vocab travels inside as an asset with `do_lower_case`, as in the hub
    encoders, so a preprocessor can always be rebuilt from the encoder alone.
    """
    model.vocab_file = tf.saved_model.Asset(vocab_file)
    model.do_lower_case = tf.Variable(lower_case, trainable=False)

    def write(tmp):
        save(model, tmp)
        if config is not None:
            with open(os.path.join(tmp, "bert_config.json"), "w") as f:
                json.dump(dataclasses.asdict(config), f, indent=2)

    return rundir.replace_dir(path, write)


def export_random(path: str, cfg: BertConfig, vocab_file: str, lower_case: bool = True,
                  seed: int = 0) -> str:
    """Builds a randomly initialised encoder and exports it (tests, the demo)."""
    keras.utils.set_random_seed(seed)
    return export(build(cfg), path, vocab_file, lower_case, cfg)


def variables_by_name(model: keras.Model, with_mlm: bool) -> dict:
    """{our weight name: variable} of a model from `build` (its `.mlm` head too, if asked)."""
    return {v.name[: -len(":0")]: v for v in (model.mlm.weights if with_mlm else model.weights)}


def open_saved(handle: str):
    """(the loaded SavedModel, the path or URL it was loaded from) of an encoder handle."""
    loadable = handles.resolve(handle, "Encoder handle")
    try:
        return hub.load(loadable), loadable
    except Exception as e:  # hub raises many types; all mean "cannot load".
        raise UserError(f"Encoder handle {handle!r} could not be loaded: {e}") from e


def load(handle: str, trainable: bool = True, name: str = "encoder", seed: int | None = None,
         native: bool = True, recompute: bool = False) -> keras.layers.Layer:
    """Loads a TF Hub encoder handle or local SavedModel directory as a Keras layer.

    With `native` (the default) the weights go into our own Keras encoder (`build`), which
    trains and labels faster than the SavedModel's fixed graph and follows the
    mixed-precision policy; it is checked against the SavedModel's own outputs first, once
    per process and version of its files (`_CHECKED`: a sweep loads its student for every
    trial). An encoder whose weights do not map (`weights.Unmapped`) runs through
    `hub.KerasLayer`, with one line saying why. `seed` seeds the native encoder's dropout;
    `recompute` (native only) trades a second forward pass of each block for the memory of
    its activations.

    Raises:
      UserError: if the handle cannot be loaded or lacks the encoder signature.
    """
    key = _files_key(handle) if native else None
    checked = _CHECKED.get(key)
    model = checked and _from_checkpoint(key[0], checked, seed=seed, name=name,
                                         recompute=recompute)
    if model is not None:
        model.trainable = trainable
        return model
    loaded, loadable = open_saved(handle)
    layer = hub.KerasLayer(loaded, trainable=trainable, name=name)
    _check_signature(layer, handle)
    if not native:
        if recompute:
            say_hub(handle, "native_encoder: false", recompute)
        return layer
    try:
        model = native_from(loaded, loadable, seed=seed, name=name, recompute=recompute)
    except weights.Unmapped as e:
        say_hub(handle, str(e), recompute)
        return layer
    if key is not None:
        _CHECKED.clear()  # One entry: what a sweep or a grid's cells load again and again.
        _CHECKED[key] = dict(names=model.saved_names, config=model.bert_config,
                             vocab=model.source_vocab, lower_case=model.lower_case)
    model.trainable = trainable
    return model


# The last encoder whose native weights `load` checked against its SavedModel in this
# process, by `_files_key`: loaded again, its weights come straight from the SavedModel's
# checkpoint (no restore of its graph and functions, no probe).
_CHECKED: dict = {}


def _files_key(handle: str) -> tuple | None:
    """A local SavedModel's directory and the size and modification time of each of its
    files (a re-export changes it); None for a remote handle or a path that is not one."""
    if handles.is_remote(handle) or not (os.path.isfile(os.path.join(handle, "saved_model.pb"))
                                         and os.path.isdir(os.path.join(handle, "variables"))):
        return None
    local = os.path.realpath(handle)
    files = [os.path.join(local, "saved_model.pb")] + sorted(
        os.path.join(local, "variables", f) for f in os.listdir(os.path.join(local, "variables")))
    return (local,) + tuple((f, st.st_size, st.st_mtime_ns) for f in files
                            for st in [os.stat(f)])


def _from_checkpoint(local: str, checked: dict, seed: int | None, name: str,
                     recompute: bool) -> keras.Model | None:
    """Our encoder with the weights of the SavedModel in `local`, already checked
    (`_CHECKED`), read from its variables by the names they were saved under; None if one of
    them is not there."""
    saved = checkpoint_tensors(local)
    if not set(checked["names"]) <= set(saved):
        return None
    model = assigned(saved, checked["config"], local, seed=seed, name=name,
                     recompute=recompute)
    model.saved_names = checked["names"]
    model.source_vocab, model.lower_case = checked["vocab"], checked["lower_case"]
    return model


def checkpoint_tensors(saved_model_dir: str) -> weights.Lazy:
    """A SavedModel's variables by the names they were saved under, each read from its
    checkpoint when looked up (without restoring its graph, and one at a time)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(os.path.join(saved_model_dir, "variables", "variables"))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    keys = {a.full_name: a.checkpoint_key for node in graph.nodes for a in node.attributes}
    return weights.Lazy(keys, reader.get_tensor)


def say_hub(handle: str, why: str, recompute: bool = False, stage: str = "encoder") -> None:
    """The one line that says an encoder runs through `hub.KerasLayer`, and why."""
    print(f"[{stage}] {handle} runs through hub.KerasLayer: {why}"
          + ("; it keeps every activation (recompute applies to the native encoder only)"
             if recompute else ""))


def first_replica(layer, inputs: dict):
    """`layer(inputs)`, in replica context under a strategy's scope (where restored functions
    must run), as the first replica's result."""
    strategy = tf.distribute.get_strategy()
    return strategy.experimental_local_results(strategy.run(layer, args=(inputs,)))[0]


def probe(cfg: BertConfig) -> dict:
    """Two sequences of 12 word pieces, the second padded after 8, both token types."""
    ids = (np.arange(24).reshape(2, 12) * 7919 + 3) % min(cfg.vocab_size, 1000)
    mask = np.ones_like(ids)
    mask[1, 8:] = 0
    types = np.zeros_like(ids)
    types[:, 6:] = min(1, cfg.type_vocab_size - 1)
    return {n: tf.constant(a, tf.int32) for n, a in zip(INPUT_NAMES, (ids, mask, types))}


def native_from(loaded, loadable: str, seed: int | None = None, name: str = "encoder",
                with_mlm: bool = False, recompute: bool = False) -> keras.Model:
    """Our encoder (`.mlm` too if asked) with `loaded`'s weights, checked against `loaded`'s
    own functions on a probe batch (float32, 1e-4); under a mixed-precision policy it is
    then rebuilt in that policy with the same weights. It remembers its vocab, casing, sizes
    (`export_native`) and the saved names its weights came from.

    Raises:
      weights.Unmapped: if the weights do not map or the outputs differ.
    """
    saved = {v.name[: -len(":0")]: v for v in (loaded.mlm if with_mlm else loaded).variables}
    model = assigned(saved, None, loadable, seed=seed, dtype="float32", name=name,
                      with_mlm=with_mlm, recompute=recompute)
    cfg = model.bert_config
    with distribute.bf16_rewrite_as(False):  # Under `precision: bfloat16` too: both in float32.
        gap = _gap(loaded, model, cfg, with_mlm)
    if not gap <= 1e-4:
        raise weights.Unmapped(f"its outputs differ from the SavedModel's by {gap:.2g}")
    if keras.mixed_precision.global_policy().name != "float32":
        model = _rebuilt(model, cfg, with_mlm, seed=seed, name=name, recompute=recompute)
    model.bert_config, model.saved_names = cfg, sorted(saved)
    model.source_vocab = loaded.vocab_file.asset_path.numpy().decode() if hasattr(
        loaded, "vocab_file") else None
    model.lower_case = bool(loaded.do_lower_case.numpy()) if hasattr(loaded, "do_lower_case") else True
    return model


def assigned(saved: dict, cfg: BertConfig | None, loadable: str, with_mlm: bool = False,
              **build_args) -> keras.Model:
    """`build` with the SavedModel's weights `saved` ({saved name: value}) mapped onto it;
    `cfg` None: the sizes read from the weights and the SavedModel (`_native_config`).

    Raises:
      weights.Unmapped: if the weights do not map.
    """
    layout, tensors = _ours(saved)
    cfg = cfg or _native_config(tensors, layout, loadable)
    model = build(cfg, with_mlm=with_mlm, **build_args)
    try:
        weights.assign(variables_by_name(model, with_mlm), tensors, layout, cfg.num_layers,
                       with_mlm, loadable)
    except UserError as e:
        raise weights.Unmapped(str(e)) from None
    model.bert_config = cfg
    return model


def saved_config(saved: dict, loadable: str) -> BertConfig:
    """The sizes of the encoder whose weights are `saved` ({saved name: value}), from their
    shapes and the SavedModel at `loadable` (`_native_config`).

    Raises:
      weights.Unmapped: if the weights do not tell them.
    """
    layout, tensors = _ours(saved)
    return _native_config(tensors, layout, loadable)


def _ours(saved: dict) -> tuple[str, weights.Lazy]:
    """The layout of the weights `saved` ({saved name: value}) and them by our names."""
    layout, names = weights.saved_layout(list(saved))
    return layout, weights.Lazy(names, saved.__getitem__)


def _gap(loaded, model: keras.Model, cfg: BertConfig, with_mlm: bool) -> float:
    """The largest difference between `loaded`'s outputs and `model`'s on the probe batch."""
    batch = probe(cfg)
    real = batch["input_mask"].numpy().astype(bool)
    if with_mlm:
        batch["masked_lm_positions"] = tf.constant([[1, 3], [2, 5]], tf.int32)
    ours = model.mlm if with_mlm else model
    reference = hub.KerasLayer(loaded.mlm if with_mlm else loaded)
    want, got = first_replica(reference, batch), first_replica(ours, batch)
    if len(want["encoder_outputs"]) != len(got["encoder_outputs"]):
        return float("inf")
    gaps = [np.abs(want["pooled_output"] - got["pooled_output"]).max(),
            np.abs(np.asarray(want["sequence_output"])[real]
                   - np.asarray(got["sequence_output"])[real]).max()]
    if with_mlm:
        gaps.append(np.abs(want["mlm_logits"] - got["mlm_logits"]).max())
    return float(max(gaps))


def _rebuilt(model: keras.Model, cfg: BertConfig, with_mlm: bool, **build_args) -> keras.Model:
    """`model` built again (another dtype policy) with the same weights, `.mlm` included."""
    copy = build(cfg, with_mlm=with_mlm, **build_args)
    (copy.mlm if with_mlm else copy).set_weights((model.mlm if with_mlm else model).get_weights())
    return copy


def export_native(model: keras.Model, path: str) -> str:
    """Exports an encoder from `native_from` (trained or not) in the TF Hub format, with the
    vocab and casing of the SavedModel it came from."""
    if not model.source_vocab:
        raise UserError(f"cannot export to {path}: the encoder's SavedModel carried no vocab_file.")
    plain = model
    if model.dtype_policy.name != "float32":  # The interchange format computes in float32.
        plain = _rebuilt(model, model.bert_config, hasattr(model, "mlm"), dtype="float32")
    return export(plain, path, model.source_vocab, model.lower_case, model.bert_config)


def _native_config(tensors: dict, layout: str, loadable: str) -> BertConfig:
    """The encoder's sizes from its weights, heads and activation from bert_config.json
    (our exports) or else from the weights' shapes and the graph's ops (Model Garden's)."""
    sizes = weights.infer_sizes(tensors, layout)
    local = loadable if os.path.isdir(loadable) else hub.resolve(loadable)
    config_path = os.path.join(local, "bert_config.json")
    if os.path.isfile(config_path):
        with open(config_path) as f:
            saved = BertConfig(**json.load(f))
        wrong = {k: v for k, v in sizes.items() if getattr(saved, k if k != "intermediate_size"
                                                           else "intermediate") != v}
        if wrong:
            raise weights.Unmapped(f"bert_config.json disagrees with its weights on {sorted(wrong)}")
        return saved
    if "num_heads" not in sizes:
        raise weights.Unmapped("no bert_config.json says its number of attention heads")
    return BertConfig(**sizes, activation=_graph_activation(local))


def _graph_activation(saved_model_dir: str) -> str:
    """The intermediate activation a SavedModel's graph computes: Erf/Erfc ops mean exact GELU,
    Relu means ReLU, else the tanh approximation (the output check catches a wrong guess)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops = {node.op for meta in proto.meta_graphs for fn in meta.graph_def.library.function
           for node in fn.node_def}
    if ops & {"Erf", "Erfc"}:
        return "gelu"
    return "relu" if "Relu" in ops else "gelu_approximate"


def _check_signature(layer: hub.KerasLayer, handle: str) -> None:
    """Calls the encoder on a 1x2 dummy batch to check it speaks the encoder API."""
    dummy = {n: tf.constant([[1, 2]], tf.int32) for n in INPUT_NAMES}
    dummy["input_mask"] = tf.ones_like(dummy["input_mask"])
    dummy["input_type_ids"] = tf.zeros_like(dummy["input_type_ids"])
    try:
        out = first_replica(layer, dummy)
    except Exception as e:
        raise UserError(
            f"Encoder handle {handle!r} does not accept the encoder inputs "
            f"{{{', '.join(INPUT_NAMES)}}} (int32 [batch, seq]): {e}") from e
    if not isinstance(out, dict) or "pooled_output" not in out or "sequence_output" not in out:
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise UserError(f"Encoder handle {handle!r} must return a dict with pooled_output and "
                        f"sequence_output; received {got}.")
