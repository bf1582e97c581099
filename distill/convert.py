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
import tensorflow as tf

from distill import encoders, rundir, text, weights
from distill.errors import UserError

FORMATS = ("bert-tf1", "hf")

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_approximate", "gelu_pytorch_tanh": "gelu_approximate",
                "relu": "relu"}


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
    with_mlm = weights.mapping(0, True)[-1].name(fmt) in tensors
    model = encoders.build(cfg, with_mlm=with_mlm)
    weights.assign(encoders.variables_by_name(model, with_mlm), tensors, fmt, cfg.num_layers,
                   with_mlm, src)
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
    values = {v.name[: -len(":0")]: v.numpy()
              for v in (loaded.mlm.variables if with_mlm else loaded.variables)}
    cfg = dataclasses.replace(cfg, num_layers=layers)
    model = encoders.build(cfg, with_mlm=with_mlm)
    weights.assign(encoders.variables_by_name(model, with_mlm), values, "ours", layers, with_mlm,
                   encoder_dir)
    vocab = loaded.vocab_file.asset_path.numpy().decode()
    return encoders.export(model, output, vocab, bool(loaded.do_lower_case.numpy()), cfg)
