"""The token-id contract of the on-device and ONNX exports, and how an export is measured.

TFLite and ONNX Runtime have no kernels for tensorflow-text's BERT tokenizer, so these
exports take token ids: `input_word_ids`, `input_mask` and `input_type_ids`, int32
[1, seq_length], packed as BERT packs them ([CLS] a [SEP] b [SEP], WordPiece ids of
DIR/vocab.txt, truncated to seq_length, zero padded), and return `logits` [1, outputs];
DIR/tokenizer.json says seq_length, casing and label names.

    distill export RUN --output DIR --format tflite|onnx
"""
from __future__ import annotations

import json
import os
import shutil

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from distill import config as config_lib, data, encoders, metrics, rundir, tasks, text
from distill.errors import UserError
from students import export


def logits_function(cfg: config_lib.Config, run_dir: str):
    """The run's final student as a tf.function on the contract's inputs, int32 [1, seq_length]
    -> {"logits"}: what the converters take. Returns (it, the loaded SavedModel, which owns the
    variables and must stay alive while converting)."""
    loaded = tf.saved_model.load(rundir.RunDir(run_dir, cfg).student_model)
    serve = loaded.signatures["serving_default"]
    spec = [tf.TensorSpec([1, cfg.student.seq_length], tf.int32, name=n)
            for n in encoders.INPUT_NAMES]

    @tf.function(input_signature=spec)
    def logits(input_word_ids, input_mask, input_type_ids):
        return {"logits": serve(input_word_ids=input_word_ids, input_mask=input_mask,
                                input_type_ids=input_type_ids)["logits"]}

    return logits, loaded


def examples(source: tf.data.Dataset, packer: text.Packer):
    """Batches of one example, packed to the full seq_length, as int32 arrays by input name."""
    for batch in source.batch(1).map(lambda b: packer(b, full_length=True)):
        yield {n: batch[n].numpy() for n in encoders.INPUT_NAMES}


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
    for example, label in zip(examples(source.get_tfdata(), packer), data.labels(source, task)):
        got.append(fn(example))
        want.append(saved_fn(example))
        labels.append(label)
    got, want, labels = np.stack(got), np.stack(want), np.asarray(labels)
    first = next(examples(source.get_tfdata().take(1), packer))
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


def run(run_dir: str, output: str, quantize: str, fmt: dict) -> dict:
    """One token-id export: checks `quantize`, converts, writes DIR and measures it.

    Args:
      fmt: the format's {"name", "file", "quantize" (allowed values), "convert" (cfg, run_dir,
        quantize) -> model bytes, "open" (path) -> fn(example) -> logits, "record" (the
        RunDir property its measurements go to)}.
    """
    if quantize not in fmt["quantize"]:
        raise UserError(f"--quantize: expected one of {list(fmt['quantize'])} for --format "
                        f"{fmt['name']}; received {quantize!r}.")
    cfg = export.run_config(run_dir)
    paths = rundir.RunDir(run_dir, cfg)
    vocab = text.vocab_file(cfg.student.preprocessor)
    if vocab is None:
        raise UserError(f"student.preprocessor {cfg.student.preprocessor!r}: no vocab.txt found "
                        f"to ship beside the {fmt['name']} model.")
    model = fmt["convert"](cfg, run_dir, quantize)
    write_bundle(cfg, output, vocab, {fmt["file"]: model})
    fn = fmt["open"](os.path.join(output, fmt["file"]))
    summary = {"export": os.path.abspath(output), "quantize": quantize, "size_bytes": len(model),
               **compare_on_dev(cfg, paths, fn)}
    rundir.write_json_atomic(getattr(paths, fmt["record"]), summary)
    print(f"[export] {output}/{fmt['file']} ({quantize}): {len(model) / 1e6:.2f} MB, "
          f"{summary['latency_ms_batch_1']} ms (batch 1); dev {summary['dev_score']:.4f} against "
          f"the SavedModel's {summary['savedmodel_dev_score']:.4f}, agreement "
          f"{summary['agreement']}, largest logit difference "
          f"{summary['max_abs_logit_difference']:.2e}")
    return summary
