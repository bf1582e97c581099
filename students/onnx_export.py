"""Serving outside TensorFlow: the student as an ONNX model on token ids (ONNX Runtime).

    distill export RUN --output DIR --format onnx [--quantize dynamic]

Converted from the run's classifier SavedModel by tf2onnx, with the token-id contract of
`students/token_ids.py` (the TFLite export's: int32 [1, seq_length] in, `logits` out;
DIR/vocab.txt and DIR/tokenizer.json beside DIR/model.onnx). `dynamic` quantizes the
weights to int8 with ONNX Runtime's `quantize_dynamic`. The export is measured by ONNX
Runtime against the SavedModel on the dev set (agreement, largest logit difference,
score, batch-1 latency, size) in RUN/onnx.json, which RUN/report.md shows.

Batch 1 is fixed, as for TFLite: tf2onnx (1.17) mis-infers the attention's reshape of a
dynamic batch of the TF Hub encoder's graph.
"""
from __future__ import annotations

import os
import tempfile

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np

from distill import config as config_lib, encoders
from students import token_ids

QUANTIZE = ("none", "dynamic")
OPSET = 17


def _erfc(ctx, node, name, args):
    """tf2onnx handler for TensorFlow's Erfc (the exact GELU's), which ONNX lacks: 1 - Erf."""
    from tf2onnx import utils

    node.type = "Erf"
    one = ctx.make_const(utils.make_name("one"), np.array(1, np.float32))
    ctx.insert_new_node_on_output("Sub", node.output[0], inputs=[one.output[0], node.output[0]])
    return node


def convert(cfg: config_lib.Config, run_dir: str, quantize: str) -> bytes:
    """The run's final student as ONNX model bytes."""
    import tf2onnx

    logits, loaded = token_ids.logits_function(cfg, run_dir)  # `loaded` owns the variables.
    proto, _ = tf2onnx.convert.from_function(logits, input_signature=logits.input_signature,
                                             opset=OPSET, custom_op_handlers={"Erfc": (_erfc, [])})
    model = proto.SerializeToString()
    if quantize == "dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp:
            source, target = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
            with open(source, "wb") as f:
                f.write(model)
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
            with open(target, "rb") as f:
                model = f.read()
    return model


class Session:
    """An ONNX model as `fn(example) -> logits` for one packed example (ONNX Runtime, CPU)."""

    def __init__(self, model_path: str):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(model_path,
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, example: dict) -> np.ndarray:
        return self.session.run(["logits"], {n: example[n] for n in encoders.INPUT_NAMES})[0][0]


def run(run_dir: str, output: str, quantize: str = "none") -> dict:
    """Writes DIR/model.onnx, vocab.txt and tokenizer.json; measures them (RUN/onnx.json)."""
    return token_ids.run(run_dir, output, quantize, {
        "name": "onnx", "file": "model.onnx", "quantize": QUANTIZE, "convert": convert,
        "open": Session, "record": "onnx"})
