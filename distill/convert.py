"""Checkpoint converters: google-research/bert (TF1) and Hugging Face BERT -> TF Hub format.

    distill convert --from bert-tf1 uncased_L-4_H-256_A-4/ --output encoders/bert_mini
    distill convert --from hf path/to/hf_model/ --output encoders/minilm [--layers 3]

Writes OUTPUT/encoder (an encoder SavedModel with the hub encoder API, `.mlm`
when the checkpoint has MLM weights) and OUTPUT/preprocessor (a
`bert_en_uncased_preprocess/3`-format SavedModel from the checkpoint's
vocab.txt and casing). Both work anywhere a hub handle does. `--layers K` keeps
the embeddings and the first K Transformer layers: a student initialised from
the teacher's lower layers (Sun et al. 2019; Turc et al. 2019, Sec. 6).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from distill import encoders, rundir, text
from distill.errors import UserError

FORMATS = ("bert-tf1", "hf")

# Our variable name -> (TF1 name, Hugging Face name); HF linear weights are [out, in].
_EMBEDDINGS = [
    ("embeddings/word_embeddings", "bert/embeddings/word_embeddings", "embeddings.word_embeddings.weight"),
    ("embeddings/position_embeddings", "bert/embeddings/position_embeddings",
     "embeddings.position_embeddings.weight"),
    ("embeddings/type_embeddings", "bert/embeddings/token_type_embeddings",
     "embeddings.token_type_embeddings.weight"),
]
_LAYER_PARTS = [  # ours, TF1 under bert/encoder/layer_i/, HF under encoder.layer.i.
    ("query", "attention/self/query", "attention.self.query"),
    ("key", "attention/self/key", "attention.self.key"),
    ("value", "attention/self/value", "attention.self.value"),
    ("attention_output", "attention/output/dense", "attention.output.dense"),
    ("attention_layer_norm", "attention/output/LayerNorm", "attention.output.LayerNorm"),
    ("intermediate", "intermediate/dense", "intermediate.dense"),
    ("output", "output/dense", "output.dense"),
    ("output_layer_norm", "output/LayerNorm", "output.LayerNorm"),
]
_MLM = [
    ("mlm/transform", "cls/predictions/transform/dense", "cls.predictions.transform.dense"),
    ("mlm/layer_norm", "cls/predictions/transform/LayerNorm", "cls.predictions.transform.LayerNorm"),
]
_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
                "relu": "relu"}


def _dense_rows(ours, tf1, hf):
    """Kernel and bias of a dense layer, or gamma and beta of a LayerNorm."""
    if ours.endswith("layer_norm"):
        return [(f"{ours}/gamma", f"{tf1}/gamma", f"{hf}.weight", False),
                (f"{ours}/beta", f"{tf1}/beta", f"{hf}.bias", False)]
    return [(f"{ours}/kernel", f"{tf1}/kernel", f"{hf}.weight", True),
            (f"{ours}/bias", f"{tf1}/bias", f"{hf}.bias", False)]


def mapping(num_layers: int, with_mlm: bool) -> list[tuple[str, str, str, bool]]:
    """Rows of (our variable, TF1 name, HF name, whether HF stores it transposed)."""
    rows = [(o, t, h, False) for o, t, h in _EMBEDDINGS]
    rows += _dense_rows("embeddings/layer_norm", "bert/embeddings/LayerNorm", "embeddings.LayerNorm")
    for i in range(num_layers):
        for ours, tf1, hf in _LAYER_PARTS:
            rows += _dense_rows(f"transformer/layer_{i}/{ours}", f"bert/encoder/layer_{i}/{tf1}",
                                f"encoder.layer.{i}.{hf}")
    rows += _dense_rows("pooler", "bert/pooler/dense", "pooler.dense")
    if with_mlm:
        for ours, tf1, hf in _MLM:
            rows += _dense_rows(ours, tf1, hf)
        rows.append(("mlm/output_bias", "cls/predictions/output_bias", "cls.predictions.bias", False))
    return rows


def _config(path: str) -> encoders.BertConfig:
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist; expected the checkpoint's BERT config.")
    with open(path) as f:
        return _config_from_dict(json.load(f), path)


def _config_from_dict(c: dict, path: str = "config") -> encoders.BertConfig:
    try:
        activation = _ACTIVATIONS[c.get("hidden_act", "gelu")]
    except KeyError:
        raise UserError(f"{path}: hidden_act {c['hidden_act']!r} is not supported; expected one "
                        f"of {sorted(_ACTIVATIONS)}.") from None
    try:
        return encoders.BertConfig(
            num_layers=c["num_hidden_layers"], hidden_size=c["hidden_size"],
            num_heads=c["num_attention_heads"], vocab_size=c["vocab_size"],
            intermediate_size=c["intermediate_size"], max_position=c["max_position_embeddings"],
            type_vocab_size=c.get("type_vocab_size", 2),
            dropout=c.get("hidden_dropout_prob", 0.1),
            initializer_range=c.get("initializer_range", encoders.INIT_STDDEV), activation=activation)
    except KeyError as e:
        raise UserError(f"{path}: field {e.args[0]!r} is missing; expected a BERT config.") from None


def read_hf(src: str) -> tuple[encoders.BertConfig, dict, bool]:
    """(config, tensors by HF name without the `bert.` prefix, lower_case) of a HF checkpoint."""
    from safetensors.numpy import load_file

    weights = os.path.join(src, "model.safetensors")
    if not os.path.isfile(weights):
        raise UserError(f"{weights} does not exist; expected a Hugging Face BERT checkpoint "
                        f"with model.safetensors (PyTorch .bin files are not read).")
    cfg = _config(os.path.join(src, "config.json"))
    tensors = {k[len("bert."):] if k.startswith("bert.") else k: v
               for k, v in load_file(weights).items()}
    # Old checkpoints name LayerNorm parameters gamma/beta.
    tensors.update({k.replace(".gamma", ".weight").replace(".beta", ".bias"): v
                    for k, v in tensors.items() if "LayerNorm" in k})
    lower_case = True
    tokenizer_config = os.path.join(src, "tokenizer_config.json")
    if os.path.isfile(tokenizer_config):
        with open(tokenizer_config) as f:
            lower_case = bool(json.load(f).get("do_lower_case", True))
    return cfg, tensors, lower_case


def read_tf1(src: str) -> tuple[encoders.BertConfig, dict, bool]:
    """(config, tensors by TF1 name, lower_case) of a google-research/bert checkpoint dir."""
    cfg = _config(os.path.join(src, "bert_config.json"))
    index = sorted(f for f in os.listdir(src) if f.endswith(".ckpt.index")) if os.path.isdir(src) else []
    if not index:
        raise UserError(f"{src}: no *.ckpt.index file; expected bert_model.ckpt.* as released.")
    reader = tf.train.load_checkpoint(os.path.join(src, index[0][: -len(".index")]))
    tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    name = os.path.basename(os.path.normpath(src)).lower()
    return cfg, tensors, not ("cased" in name and "uncased" not in name)


def convert(fmt: str, src: str, output: str, layers: int | None = None,
            lower_case: bool | None = None) -> dict:
    """Converts the checkpoint at `src` into OUTPUT/encoder and OUTPUT/preprocessor.

    Raises:
      UserError: unknown format, missing files, or a tensor whose name or shape
        does not match BERT (the first one found is named).
    """
    if fmt not in FORMATS:
        raise UserError(f"--from {fmt!r}: expected one of {FORMATS}.")
    cfg, tensors, cased_default = (read_hf if fmt == "hf" else read_tf1)(src)
    lower_case = cased_default if lower_case is None else lower_case
    vocab = os.path.join(src, "vocab.txt")
    if not os.path.isfile(vocab):
        raise UserError(f"{vocab} does not exist; expected the checkpoint's WordPiece vocab.")
    if layers is not None:
        if not 1 <= layers <= cfg.num_layers:
            raise UserError(f"--layers {layers}: expected 1..{cfg.num_layers} for this checkpoint.")
        cfg = dataclasses.replace(cfg, num_layers=layers)
    column = 1 if fmt == "bert-tf1" else 2
    mlm_name = mapping(0, True)[-1][column]
    with_mlm = mlm_name in tensors
    model = encoders.build(cfg, with_mlm=with_mlm)
    variables = {v.name[: -len(":0")]: v for v in
                 (model.mlm.weights if with_mlm else model.weights)}
    for row in mapping(cfg.num_layers, with_mlm):
        ours, source, transposed = row[0], row[column], row[3] and fmt == "hf"
        if source not in tensors:
            raise UserError(f"{src}: checkpoint lacks tensor {source!r} (for {ours}); it does not "
                            f"match a BERT of {cfg.num_layers} layers.")
        value = tensors[source].T if transposed else tensors[source]
        target = variables[ours]
        if tuple(value.shape) != tuple(target.shape):
            raise UserError(f"{src}: tensor {source!r} has shape {tuple(tensors[source].shape)}; "
                            f"expected {tuple(target.shape)} for {ours}.")
        target.assign(value.astype(np.float32))
    os.makedirs(output, exist_ok=True)
    local_vocab = os.path.join(output, "vocab.txt")
    rundir.write_file_atomic(local_vocab, lambda tmp: shutil.copyfile(vocab, tmp))
    encoders.export(model, os.path.join(output, "encoder"), local_vocab, lower_case, cfg)
    text.export(os.path.join(output, "preprocessor"), local_vocab, lower_case)
    summary = {"from": fmt, "source": os.path.abspath(src), "layers": cfg.num_layers,
               "hidden_size": cfg.hidden_size, "with_mlm": with_mlm, "lower_case": lower_case}
    rundir.write_json_atomic(os.path.join(output, "conversion.json"), summary)
    return summary


def truncate(encoder_dir: str, layers: int, output: str) -> str:
    """Keeps the embeddings and first `layers` layers of an encoder exported by this project.

    Raises:
      UserError: if `encoder_dir` has no bert_config.json (hub encoders do not say
        their sizes; convert their original checkpoint with --layers instead).
    """
    config_path = os.path.join(encoder_dir, "bert_config.json")
    if not os.path.isfile(config_path):
        raise UserError(f"{config_path} does not exist; truncation needs an encoder exported by "
                        f"`distill convert` or this project's builder.")
    with open(config_path) as f:
        cfg = encoders.BertConfig(**json.load(f))
    if not 1 <= layers <= cfg.num_layers:
        raise UserError(f"layers={layers}: expected 1..{cfg.num_layers} for {encoder_dir}.")
    import tensorflow_hub as hub

    loaded = hub.load(encoder_dir)
    with_mlm = hasattr(loaded, "mlm")
    values = {v.name: v for v in (loaded.mlm.variables if with_mlm else loaded.variables)}
    cfg = dataclasses.replace(cfg, num_layers=layers)
    model = encoders.build(cfg, with_mlm=with_mlm)
    for v in (model.mlm.weights if with_mlm else model.weights):
        v.assign(values[v.name])
    vocab = loaded.vocab_file.asset_path.numpy().decode()
    return encoders.export(model, output, vocab, bool(loaded.do_lower_case.numpy()), cfg)
