"""On-device export: the student as a TFLite model on token ids.

    distill export RUN --output DIR --format tflite [--quantize dynamic|float16|int8]

TFLite has no kernels for tensorflow-text's BERT tokenizer, so tokenization stays outside
the model, with a documented contract: DIR/model.tflite takes `input_word_ids`,
`input_mask` and `input_type_ids`, int32 [1, seq_length], packed as BERT packs them
([CLS] a [SEP] b [SEP], WordPiece ids of DIR/vocab.txt, truncated to seq_length, zero
padded), and returns `logits` [1, outputs]; DIR/tokenizer.json says seq_length, casing and
label names. int8 quantization is calibrated on the student's packing of the first
`CALIBRATION_EXAMPLES` transfer texts of the run's store. The export is measured with
LiteRT (`ai_edge_litert`) against the run's SavedModel on the dev set (agreement, largest
logit difference, score) and its size and batch-1 latency go to RUN/tflite.json, which
RUN/report.md shows. The contract is `students/token_ids.py`'s, shared with ONNX.
"""
from __future__ import annotations

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from distill import config as config_lib, encoders, rundir, store, tasks, text
from students import token_ids

QUANTIZE = ("none", "dynamic", "float16", "int8")
CALIBRATION_EXAMPLES = 200


def convert(cfg: config_lib.Config, run_dir: str, quantize: str) -> bytes:
    """The run's final student as TFLite flatbuffer bytes."""
    logits, loaded = token_ids.logits_function(cfg, run_dir)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([logits.get_concrete_function()],
                                                                loaded)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        task = tasks.get(cfg.task)
        transfer, _ = store.read(rundir.RunDir(run_dir, cfg).store, verify_checksums=False)
        packer = text.packer(cfg.student, task.is_pair)

        def calibration():
            for ex in token_ids.examples(transfer.take(CALIBRATION_EXAMPLES), packer):
                yield [ex[n] for n in encoders.INPUT_NAMES]

        converter.representative_dataset = calibration
    return converter.convert()


class Interpreter:
    """A TFLite model as `fn(example) -> logits` for one packed example, run by LiteRT (the
    `ai_edge_litert` interpreter that replaces TensorFlow's deprecated `tf.lite.Interpreter`;
    TensorFlow's converter still writes the model)."""

    def __init__(self, model_path: str):
        from ai_edge_litert.interpreter import Interpreter as LiteRT

        self.interpreter = LiteRT(model_path=model_path)
        self.interpreter.allocate_tensors()
        self.inputs = {n: next(d["index"] for d in self.interpreter.get_input_details()
                               if n in d["name"]) for n in encoders.INPUT_NAMES}
        self.output = self.interpreter.get_output_details()[0]["index"]

    def __call__(self, example: dict) -> np.ndarray:
        for name, index in self.inputs.items():
            self.interpreter.set_tensor(index, example[name])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[0]


def run(run_dir: str, output: str, quantize: str = "none") -> dict:
    """Writes DIR/model.tflite, vocab.txt and tokenizer.json; measures them (RUN/tflite.json)."""
    return token_ids.run(run_dir, output, quantize, {
        "name": "tflite", "file": "model.tflite", "quantize": QUANTIZE, "convert": convert,
        "open": Interpreter, "record": "tflite"})
