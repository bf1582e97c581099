"""BERT encoders in the TF Hub encoder format: build, export and load.

`load(handle)` is the one way the pipeline gets an encoder: a TF Hub handle or a
local SavedModel directory, through `hub.KerasLayer`. `build` and `export` make
a BERT encoder (Devlin et al. 2019, Sec. 3) of any (L, H, A, vocab) and save it
with the same API as the hub encoders:

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
import tensorflow as tf
import tf_keras as keras
import tensorflow_hub as hub

from distill import handles, rundir
from distill.errors import UserError

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
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


def _dense(units, name, cfg, activation=None):
    init = keras.initializers.TruncatedNormal(stddev=cfg.initializer_range)
    return keras.layers.Dense(units, activation=activation, kernel_initializer=init, name=name)


def _layer_norm(name):
    return keras.layers.LayerNormalization(epsilon=1e-12, name=name)


_ACTIVATIONS = {
    "gelu": lambda x: tf.nn.gelu(x, approximate=False),
    "gelu_approximate": lambda x: tf.nn.gelu(x, approximate=True),
    "relu": tf.nn.relu,
}


class Embeddings(keras.layers.Layer):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.cfg = cfg
        self.norm = _layer_norm("layer_norm")
        # Generator-backed dropout: its state is a variable, saved with the encoder and in
        # training checkpoints, so a resumed run draws the masks an uninterrupted one would.
        self.dropout = keras.layers.Dropout(cfg.dropout, force_generator=True)

    def build(self, input_shape):
        def table(name, rows):
            init = keras.initializers.TruncatedNormal(stddev=self.cfg.initializer_range)
            return self.add_weight(name, [rows, self.cfg.hidden_size], initializer=init)

        self.word_embeddings = table("word_embeddings", self.cfg.vocab_size)
        self.position_embeddings = table("position_embeddings", self.cfg.max_position)
        self.type_embeddings = table("type_embeddings", self.cfg.type_vocab_size)
        super().build(input_shape)

    def call(self, word_ids, type_ids, training=None):
        seq_len = tf.shape(word_ids)[1]
        x = tf.gather(self.word_embeddings, word_ids)
        x += tf.gather(self.type_embeddings, type_ids)
        x += self.position_embeddings[tf.newaxis, :seq_len]
        return self.dropout(self.norm(x), training=training)


class TransformerLayer(keras.layers.Layer):
    """One post-LayerNorm Transformer block (Vaswani et al. 2017), as BERT uses it."""

    def __init__(self, cfg: BertConfig, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.head_size = cfg.num_heads, cfg.hidden_size // cfg.num_heads
        h = cfg.hidden_size
        self.query, self.key, self.value = (_dense(h, n, cfg) for n in ("query", "key", "value"))
        self.attention_output = _dense(h, "attention_output", cfg)
        self.attention_norm = _layer_norm("attention_layer_norm")
        self.intermediate = _dense(cfg.intermediate, "intermediate", cfg,
                                   activation=_ACTIVATIONS[cfg.activation])
        self.output_dense = _dense(h, "output", cfg)
        self.output_norm = _layer_norm("output_layer_norm")
        self.dropout = keras.layers.Dropout(cfg.dropout, force_generator=True)

    def _split_heads(self, x):
        shape = tf.shape(x)
        return tf.reshape(x, [shape[0], shape[1], self.heads, self.head_size])

    def call(self, x, mask_bias, training=None):
        q, k, v = (self._split_heads(f(x)) for f in (self.query, self.key, self.value))
        scores = tf.einsum("bthd,bshd->bhts", q, k) * (self.head_size ** -0.5)
        probs = tf.nn.softmax(scores + tf.cast(mask_bias, scores.dtype), axis=-1)
        probs = self.dropout(probs, training=training)
        context = tf.einsum("bhts,bshd->bthd", probs, v)
        context = tf.reshape(context, tf.shape(x))
        x = self.attention_norm(x + self.dropout(self.attention_output(context), training=training))
        y = self.output_dense(self.intermediate(x))
        return self.output_norm(x + self.dropout(y, training=training))


class MaskedLMHead(keras.layers.Layer):
    """BERT's MLM head: transform, LayerNorm, then logits tied to the word embeddings."""

    def __init__(self, cfg: BertConfig, embeddings: Embeddings, **kwargs):
        super().__init__(**kwargs)
        self.embeddings = embeddings
        self.transform = _dense(cfg.hidden_size, "transform", cfg,
                                activation=_ACTIVATIONS[cfg.activation])
        self.norm = _layer_norm("layer_norm")
        self.vocab_size = cfg.vocab_size

    def build(self, input_shape):
        self.output_bias = self.add_weight("output_bias", [self.vocab_size], initializer="zeros")
        super().build(input_shape)

    def call(self, sequence_output, positions):
        x = tf.gather(sequence_output, positions, batch_dims=1)
        x = self.norm(self.transform(x))
        return tf.matmul(x, self.embeddings.word_embeddings, transpose_b=True) + self.output_bias


def _mask_bias(input_mask):
    """[batch, seq] 0/1 mask -> additive attention bias [batch, 1, 1, seq]."""
    return (1.0 - tf.cast(input_mask, tf.float32))[:, tf.newaxis, tf.newaxis, :] * -1e9


def build(cfg: BertConfig, with_mlm: bool = True) -> keras.Model:
    """Builds a BERT encoder as a Keras model with the TF Hub encoder API, `.mlm` attached."""
    inputs = {n: keras.Input((None,), dtype=tf.int32, name=n) for n in INPUT_NAMES}
    embeddings = Embeddings(cfg, name="embeddings")
    x = embeddings(inputs["input_word_ids"], inputs["input_type_ids"])
    bias = keras.layers.Lambda(_mask_bias, name="attention_mask")(inputs["input_mask"])
    layer_outputs = []
    for i in range(cfg.num_layers):
        x = TransformerLayer(cfg, name=f"transformer/layer_{i}")(x, bias)
        layer_outputs.append(x)
    first_token = keras.layers.Lambda(lambda s: s[:, 0], name="first_token")(x)
    pooled = _dense(cfg.hidden_size, "pooler", cfg, activation="tanh")(first_token)
    outputs = dict(sequence_output=x, pooled_output=pooled, encoder_outputs=layer_outputs,
                   default=pooled)
    core = keras.Model(inputs, outputs, name="bert_encoder")
    if not with_mlm:
        return core

    mlm_inputs = dict(inputs, masked_lm_positions=keras.Input((None,), dtype=tf.int32,
                                                                   name="masked_lm_positions"))
    core_outputs = core({n: mlm_inputs[n] for n in INPUT_NAMES})
    mlm_logits = MaskedLMHead(cfg, embeddings, name="mlm")(
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
        tf.saved_model.save(model, tmp)
        if config is not None:
            with open(os.path.join(tmp, "bert_config.json"), "w") as f:
                json.dump(dataclasses.asdict(config), f, indent=2)

    return rundir.replace_dir(path, write)


def export_random(path: str, cfg: BertConfig, vocab_file: str, lower_case: bool = True,
                  seed: int = 0) -> str:
    """Builds a randomly initialised encoder and exports it (tests, the demo)."""
    keras.utils.set_random_seed(seed)
    return export(build(cfg), path, vocab_file, lower_case, cfg)


def load(handle: str, trainable: bool = True, name: str = "encoder") -> hub.KerasLayer:
    """Loads a TF Hub encoder handle or local SavedModel directory as a Keras layer.

    Raises:
      UserError: if the handle cannot be loaded or lacks the encoder signature.
    """
    loadable = handles.resolve(handle, "Encoder handle")
    try:
        layer = hub.KerasLayer(loadable, trainable=trainable, name=name)
    except Exception as e:  # hub raises many types; all mean "cannot load".
        raise UserError(f"Encoder handle {handle!r} could not be loaded: {e}") from e
    _check_signature(layer, handle)
    return layer


def _check_signature(layer: hub.KerasLayer, handle: str) -> None:
    """Calls the encoder on a 1x2 dummy batch to check it speaks the encoder API."""
    dummy = {n: tf.constant([[1, 2]], tf.int32) for n in INPUT_NAMES}
    dummy["input_mask"] = tf.ones_like(dummy["input_mask"])
    dummy["input_type_ids"] = tf.zeros_like(dummy["input_type_ids"])
    strategy = tf.distribute.get_strategy()
    try:  # Under a strategy's scope, restored functions run in replica context only.
        out = strategy.experimental_local_results(strategy.run(layer, args=(dummy,)))[0]
    except Exception as e:
        raise UserError(
            f"Encoder handle {handle!r} does not accept the encoder inputs "
            f"{{{', '.join(INPUT_NAMES)}}} (int32 [batch, seq]): {e}") from e
    if not isinstance(out, dict) or "pooled_output" not in out or "sequence_output" not in out:
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise UserError(f"Encoder handle {handle!r} must return a dict with pooled_output and "
                        f"sequence_output; received {got}.")
