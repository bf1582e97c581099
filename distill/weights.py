"""Where each BERT layout keeps each weight, and the one way weights get into our Keras encoder.

Layouts (columns of `mapping`):
  ours          the names `encoders.build` gives (our exports, `distill convert`'s output)
  bert-tf1      google-research/bert checkpoints
  hf            Hugging Face `BertModel` (linear weights stored [out, in])
  model_garden  TF Hub's BERT SavedModels (bert_en_*_L-*_H-*_A-*, small_bert/*), which were
                exported from TF Model Garden's `BertEncoder`; q/k/v kernels are
                [H, heads, head size] and the attention output kernel [heads, head size, H]
                (EinsumDense), reshaped here to our [H, H]

The Model Garden names come from tensorflow/models, official/nlp/modeling:
networks/bert_encoder.py (`word_embeddings`, `position_embedding`, `type_embeddings`,
`embeddings/layer_norm`, `transformer/layer_%d`, `pooler_transform`),
layers/on_device_embedding.py and layers/position_embedding.py (each table's `embeddings`),
layers/transformer_encoder_block.py (`self_attention`, `self_attention_layer_norm`,
`intermediate`, `output`, `output_layer_norm`), Keras' MultiHeadAttention (`query`, `key`,
`value`, `attention_output`) and layers/masked_lm.py (`cls/predictions`, `transform/dense`,
`transform/LayerNorm`, `output_bias`).
"""
from __future__ import annotations

import collections.abc
import dataclasses
import re

import numpy as np

from distill.errors import UserError

LAYOUTS = ("ours", "bert-tf1", "hf", "model_garden")


@dataclasses.dataclass(frozen=True)
class Row:
    ours: str
    names: dict  # layout -> that layout's name of the same weight

    def name(self, layout: str) -> str:
        return self.ours if layout == "ours" else self.names[layout]


# (ours, TF1, HF, Model Garden) for the embeddings; each is a [rows, H] table.
_EMBEDDINGS = [
    ("embeddings/word_embeddings", "bert/embeddings/word_embeddings",
     "embeddings.word_embeddings.weight", "word_embeddings/embeddings"),
    ("embeddings/position_embeddings", "bert/embeddings/position_embeddings",
     "embeddings.position_embeddings.weight", "position_embedding/embeddings"),
    ("embeddings/type_embeddings", "bert/embeddings/token_type_embeddings",
     "embeddings.token_type_embeddings.weight", "type_embeddings/embeddings"),
]
# Dense layers and layer norms: ours, TF1 and HF under the layer's prefix, Model Garden's.
_LAYER_PARTS = [
    ("query", "attention/self/query", "attention.self.query", "self_attention/query"),
    ("key", "attention/self/key", "attention.self.key", "self_attention/key"),
    ("value", "attention/self/value", "attention.self.value", "self_attention/value"),
    ("attention_output", "attention/output/dense", "attention.output.dense",
     "self_attention/attention_output"),
    ("attention_layer_norm", "attention/output/LayerNorm", "attention.output.LayerNorm",
     "self_attention_layer_norm"),
    ("intermediate", "intermediate/dense", "intermediate.dense", "intermediate"),
    ("output", "output/dense", "output.dense", "output"),
    ("output_layer_norm", "output/LayerNorm", "output.LayerNorm", "output_layer_norm"),
]
_MLM = [
    ("mlm/transform", "cls/predictions/transform/dense", "cls.predictions.transform.dense",
     "cls/predictions/transform/dense"),
    ("mlm/layer_norm", "cls/predictions/transform/LayerNorm", "cls.predictions.transform.LayerNorm",
     "cls/predictions/transform/LayerNorm"),
]
_MLM_BIAS = ("mlm/output_bias", "cls/predictions/output_bias", "cls.predictions.bias",
             "cls/predictions/output_bias/bias")


def _row(ours, tf1, hf, garden) -> Row:
    return Row(ours, {"bert-tf1": tf1, "hf": hf, "model_garden": garden})


def _pair(ours, tf1, hf, garden) -> list[Row]:
    """Kernel and bias of a dense layer, or gamma and beta of a layer norm."""
    if ours.endswith("layer_norm"):
        return [_row(f"{ours}/gamma", f"{tf1}/gamma", f"{hf}.weight", f"{garden}/gamma"),
                _row(f"{ours}/beta", f"{tf1}/beta", f"{hf}.bias", f"{garden}/beta")]
    return [_row(f"{ours}/kernel", f"{tf1}/kernel", f"{hf}.weight", f"{garden}/kernel"),
            _row(f"{ours}/bias", f"{tf1}/bias", f"{hf}.bias", f"{garden}/bias")]


def mapping(num_layers: int, with_mlm: bool) -> list[Row]:
    """Every weight of a BERT of `num_layers` layers, named in each layout."""
    rows = [_row(*names) for names in _EMBEDDINGS]
    rows += _pair("embeddings/layer_norm", "bert/embeddings/LayerNorm", "embeddings.LayerNorm",
                  "embeddings/layer_norm")
    for i in range(num_layers):
        for ours, tf1, hf, garden in _LAYER_PARTS:
            rows += _pair(f"transformer/layer_{i}/{ours}", f"bert/encoder/layer_{i}/{tf1}",
                          f"encoder.layer.{i}.{hf}", f"transformer/layer_{i}/{garden}")
    rows += _pair("pooler", "bert/pooler/dense", "pooler.dense", "pooler_transform")
    if with_mlm:
        for names in _MLM:
            rows += _pair(*names)
        rows.append(_row(*_MLM_BIAS))
    return rows


def _fitted(value: np.ndarray, layout: str, ours: str, shape: tuple) -> np.ndarray:
    """`value` in our shape: HF kernels transposed, Model Garden's head axes folded."""
    if layout == "hf" and ours.endswith("/kernel"):
        value = value.T
    if layout == "model_garden" and value.shape != shape and value.size == int(np.prod(shape)):
        value = value.reshape(shape)  # [H, N, D] -> [H, N*D]; [N, D, H] -> [N*D, H]; [N, D] -> [N*D]
    return value


def assign(variables: dict, tensors: dict, layout: str, num_layers: int, with_mlm: bool,
           source: str) -> None:
    """Assigns `tensors` (by `layout`'s names) to our `variables` (by our names).

    Raises:
      UserError: naming the first tensor that is missing or has another shape.
    """
    for row in mapping(num_layers, with_mlm):
        name = row.name(layout)
        if name not in tensors:
            raise UserError(f"{source}: lacks tensor {name!r} (for {row.ours}); it does not "
                            f"match a BERT of {num_layers} layers.")
        target = variables[row.ours]
        shape = tuple(target.shape)
        value = _fitted(np.asarray(tensors[name]), layout, row.ours, shape)
        if tuple(value.shape) != shape:
            raise UserError(f"{source}: tensor {name!r} has shape {tuple(np.shape(tensors[name]))}; "
                            f"expected {shape} for {row.ours}.")
        target.assign(value.astype(target.dtype.as_numpy_dtype))


class Lazy(collections.abc.Mapping):
    """{name: array} whose arrays are read only when looked up (`read(sources[name])`): a
    model's weights are then copied in one tensor at a time, never all at once."""

    def __init__(self, sources: dict, read):
        self._sources, self._read = sources, read

    def __getitem__(self, name: str):
        return self._read(self._sources[name])

    def __iter__(self):
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


class Unmapped(Exception):
    """A SavedModel whose weights do not map onto our encoder (the reason is the message)."""


_GARDEN_ROOT = re.compile(r"(^|/)word_embeddings/embeddings$")
_GARDEN_HEAD = "cls/predictions/"


def saved_layout(names: list[str]) -> tuple[str, dict]:
    """The layout of a SavedModel's variable names, and {name in that layout: saved name}.

    Model Garden's names may sit under the exporting model's scope (`bert_encoder_v2/`, and
    `bert/` for the MLM head): what comes before `word_embeddings/embeddings` is removed
    from the encoder's names, what comes before `cls/predictions/` from the head's.

    Raises:
      Unmapped: if the names are neither ours nor Model Garden's.
    """
    if "embeddings/word_embeddings" in names:
        return "ours", {n: n for n in names}
    roots = [m for m in (_GARDEN_ROOT.search(n) for n in names) if m]
    if len(roots) == 1:
        prefix = roots[0].string[: roots[0].start() + len(roots[0].group(1))]
        found = {n[len(prefix):]: n for n in names if n.startswith(prefix)}
        found.update({n[n.index(_GARDEN_HEAD):]: n for n in names if _GARDEN_HEAD in n})
        return "model_garden", found
    raise Unmapped("its variables are neither this project's nor Model Garden's BertEncoder's")


def infer_sizes(tensors: dict, layout: str) -> dict:
    """BertConfig fields that the weights' shapes tell (heads only in Model Garden's layout).

    Raises:
      Unmapped: for an embedding projection or anything else our encoder does not have.
    """
    def shape(ours_name: str) -> tuple:
        row = next(r for r in mapping(1, False) if r.ours == ours_name)
        name = row.name(layout)
        if name not in tensors:
            raise Unmapped(f"it has no {name!r}")
        return tuple(np.shape(tensors[name]))

    if any("embedding_projection" in n for n in tensors):
        raise Unmapped("it projects its embeddings (embedding width != hidden size)")
    vocab, hidden = shape("embeddings/word_embeddings")
    layer_ids = {int(m.group(1)) for m in (re.match(r"transformer/layer_(\d+)/", n) for n in tensors) if m}
    if not layer_ids or layer_ids != set(range(len(layer_ids))):
        raise Unmapped("its layers are not transformer/layer_0..N-1")
    sizes = {"vocab_size": vocab, "hidden_size": hidden, "num_layers": len(layer_ids),
             "max_position": shape("embeddings/position_embeddings")[0],
             "type_vocab_size": shape("embeddings/type_embeddings")[0],
             "intermediate_size": shape("transformer/layer_0/intermediate/kernel")[-1]}
    query = shape("transformer/layer_0/query/kernel")
    if len(query) == 3:  # Model Garden's [H, heads, head size].
        sizes["num_heads"] = query[1]
    return sizes
