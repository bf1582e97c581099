"""On-device export: the student as a TFLite model on token ids.

    distill export RUN --output DIR --format tflite [--quantize dynamic|float16|int8]

TFLite has no kernels for tensorflow-text's BERT tokenizer, so tokenization stays outside
the model, with a documented contract: DIR/model.tflite takes `input_word_ids`,
`input_mask` and `input_type_ids`, int32 [1, seq_length], packed as BERT packs them
([CLS] a [SEP] b [SEP], WordPiece ids of DIR/vocab.txt, truncated to seq_length, zero
padded), and returns `logits` [1, outputs]; DIR/tokenizer.json says seq_length, casing and
label names. int8 quantization is calibrated on the student's packing of the first
`CALIBRATION_EXAMPLES` transfer texts of the run's store. The export is measured against
the run's SavedModel on the dev set (agreement, largest logit difference, score) and its
size and batch-1 latency go to RUN/tflite.json, which RUN/report.md shows.
"""
from __future__ import annotations

import json
import os
import shutil

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from distill import config as config_lib, data, encoders, metrics, rundir, store, tasks, text
from distill.errors import UserError
from students import export

QUANTIZE = ("none", "dynamic", "float16", "int8")
CALIBRATION_EXAMPLES = 200


def _examples(source: tf.data.Dataset, packer: text.Packer):
    """Batches of one example, packed to the full seq_length, as int32 arrays by input name."""
    for batch in source.batch(1).map(lambda b: packer(b, full_length=True)):
        yield {n: batch[n].numpy() for n in encoders.INPUT_NAMES}


def convert(cfg: config_lib.Config, run_dir: str, quantize: str) -> bytes:
    """The run's final student as TFLite flatbuffer bytes."""
    paths = rundir.RunDir(run_dir, cfg)
    loaded = tf.saved_model.load(paths.student_model)  # Kept alive: it owns the variables.
    serve = loaded.signatures["serving_default"]
    spec = [tf.TensorSpec([1, cfg.student.seq_length], tf.int32, name=n)
            for n in encoders.INPUT_NAMES]

    @tf.function(input_signature=spec)
    def logits(input_word_ids, input_mask, input_type_ids):
        return {"logits": serve(input_word_ids=input_word_ids, input_mask=input_mask,
                                input_type_ids=input_type_ids)["logits"]}

    converter = tf.lite.TFLiteConverter.from_concrete_functions([logits.get_concrete_function()],
                                                                loaded)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        task = tasks.get(cfg.task)
        transfer, _ = store.read(paths.store, verify_checksums=False)
        packer = text.packer(cfg.student, task.is_pair)

        def calibration():
            for ex in _examples(transfer.take(CALIBRATION_EXAMPLES), packer):
                yield [ex[n] for n in encoders.INPUT_NAMES]

        converter.representative_dataset = calibration
    return converter.convert()


class Interpreter:
    """A TFLite model as `fn(example) -> logits` for one packed example."""

    def __init__(self, model_path: str):
        self.interpreter = tf.lite.Interpreter(model_path=model_path)
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
    if quantize not in QUANTIZE:
        raise UserError(f"--quantize: expected one of {list(QUANTIZE)}; received {quantize!r}.")
    cfg = export.run_config(run_dir)
    paths = rundir.RunDir(run_dir, cfg)
    vocab = text.vocab_file(cfg.student.preprocessor)
    if vocab is None:
        raise UserError(f"student.preprocessor {cfg.student.preprocessor!r}: no vocab.txt found "
                        f"to ship beside the TFLite model.")
    model = convert(cfg, run_dir, quantize)
    write_bundle(cfg, output, vocab, {"model.tflite": model})
    lite = Interpreter(os.path.join(output, "model.tflite"))
    summary = {"export": os.path.abspath(output), "quantize": quantize, "size_bytes": len(model),
               **compare_on_dev(cfg, paths, lite)}
    rundir.write_json_atomic(paths.tflite, summary)
    print(f"[export] {output}/model.tflite ({quantize}): {len(model) / 1e6:.2f} MB, "
          f"{summary['latency_ms_batch_1']} ms (batch 1); dev {summary['dev_score']:.4f} against "
          f"the SavedModel's {summary['savedmodel_dev_score']:.4f}, agreement "
          f"{summary['agreement']}, largest logit difference "
          f"{summary['max_abs_logit_difference']:.2e}")
    return summary


def write_bundle(cfg: config_lib.Config, output: str, vocab: str, files: dict[str, bytes]) -> None:
    """DIR with the model `files`, the vocab and tokenizer.json (the token-id contract)."""
    task = tasks.get(cfg.task)

    def write(tmp):
        os.makedirs(tmp)
        for name, content in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(content)
        shutil.copyfile(vocab, os.path.join(tmp, "vocab.txt"))
        with open(os.path.join(tmp, "tokenizer.json"), "w") as f:
            json.dump({"seq_length": cfg.student.seq_length, "lower_case": cfg.student.lower_case,
                       "pair": task.is_pair, "inputs": list(encoders.INPUT_NAMES),
                       "packing": "[CLS] text_a [SEP] (text_b [SEP]), zero padded",
                       "outputs": "logits", "label_names": list(task.label_names)}, f, indent=2)

    rundir.replace_dir(output, write)


def compare_on_dev(cfg: config_lib.Config, paths: rundir.RunDir, fn) -> dict:
    """An export on token ids (`fn(example) -> logits`) against the run's SavedModel on the
    first dev split, one example at a time: scores, agreement, largest logit difference,
    batch-1 latency and sizes."""
    task = tasks.get(cfg.task)
    saved = tf.saved_model.load(paths.student_model).signatures["serving_default"]

    def saved_fn(example):
        return saved(**{n: tf.constant(v) for n, v in example.items()})["logits"].numpy()[0]

    split = task.dev_splits[0].name
    source = data.labeled(cfg.data, task, split)
    packer = text.packer(cfg.student, task.is_pair)
    got, want, labels = [], [], []
    for example, label in zip(_examples(source.get_tfdata(), packer), data.labels(source, task)):
        got.append(fn(example))
        want.append(saved_fn(example))
        labels.append(label)
    got, want, labels = np.stack(got), np.stack(want), np.asarray(labels)
    first = next(_examples(source.get_tfdata().take(1), packer))
    return {
        "savedmodel_size_bytes": sum(os.path.getsize(os.path.join(d, f))
                                     for d, _, fs in os.walk(paths.student_model) for f in fs),
        "latency_ms_batch_1": export.median_ms(lambda: fn(first), repeats=50),
        "savedmodel_latency_ms_batch_1": export.median_ms(lambda: saved_fn(first), repeats=50),
        "dev_split": split, "dev_examples": len(labels),
        "dev_score": metrics.compute(task, labels, got)["score"],
        "savedmodel_dev_score": metrics.compute(task, labels, want)["score"],
        "max_abs_logit_difference": float(np.abs(got - want).max()),
        "agreement": None if task.is_regression else float(
            (got.argmax(-1) == want.argmax(-1)).mean()),
    }
