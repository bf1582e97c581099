"""Export a run's student for serving: raw strings in, probabilities and label names out.

    distill export RUN --output DIR
    distill export RUN --output DIR --format encoder   # the student's encoder, TF Hub format

DIR is a SavedModel whose `serving_default` takes `text_a` (and `text_b` for
pair tasks), a batch of raw strings, tokenizes them inside the graph and
returns `probabilities` [batch, classes], `label` (the predicted label name) and
`label_names` [batch, classes], or `score` for STS-B. Load it with plain
`tf.saved_model.load` after `import tensorflow_text`; this project need not be
installed. The export checks itself against the run's own dev predictions and
records its size and latency in RUN/serving.json (which RUN/report.md shows).
"""
from __future__ import annotations

import os
import statistics
import time

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from distill import config as config_lib, data, encoders, rundir, tasks, text
from distill.errors import UserError


def build(cfg: config_lib.Config, run_dir: str) -> tuple[tf.Module, object]:
    """The serving module and its signature function."""
    task = tasks.get(cfg.task)
    classifier_dir = rundir.RunDir(run_dir, cfg).student_model
    if not os.path.isdir(classifier_dir):
        raise UserError(f"{classifier_dir} does not exist; run the student stages first.")
    module = tf.Module()
    module.classifier = tf.saved_model.load(classifier_dir)
    packer = text.packer(cfg.student, task.is_pair)
    module.preprocessor = packer.preprocessor  # Tracked, so the SavedModel carries its vocab.
    classify = module.classifier.signatures["serving_default"]
    label_names = tf.constant(task.label_names or ["score"])

    def outputs(text_a, text_b):
        inputs = packer({"text_a": text_a, "text_b": text_b})
        logits = classify(**{n: inputs[n] for n in encoders.INPUT_NAMES})["logits"]
        if task.is_regression:
            return {"score": logits[:, 0]}
        probabilities = tf.nn.softmax(logits, axis=-1)
        return {"probabilities": probabilities,
                "label": tf.gather(label_names, tf.argmax(probabilities, axis=-1)),
                "label_names": tf.broadcast_to(label_names, tf.shape(probabilities))}

    spec = tf.TensorSpec([None], tf.string)
    if task.is_pair:
        serve = tf.function(lambda text_a, text_b: outputs(text_a, text_b),
                            input_signature=[spec, spec])
    else:
        serve = tf.function(lambda text_a: outputs(text_a, tf.zeros_like(text_a)),
                            input_signature=[spec])
    return module, serve


def median_ms(call, repeats: int = 20) -> float:
    """Median wall time of `call()` in milliseconds, after three warm-up calls."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 3)


def _latency_ms(fn, texts: list[str], pair: bool) -> float:
    batch = {"text_a": tf.constant(texts)}
    if pair:
        batch["text_b"] = tf.constant(texts)
    return median_ms(lambda: fn(**batch))


def run_config(run_dir: str) -> config_lib.Config:
    """The config a finished run saved (RUN/config.yaml), which an export reads."""
    config_path = rundir.RunDir(run_dir).config
    if not os.path.isfile(config_path):
        raise UserError(f"{run_dir} has no config.yaml; expected a directory made by `distill run`.")
    return config_lib.load(config_path)


def run(run_dir: str, output: str) -> dict:
    """Exports the run's final student to `output`, checks it, and records size and latency."""
    cfg = run_config(run_dir)
    task = tasks.get(cfg.task)
    module, serve = build(cfg, run_dir)
    rundir.replace_dir(output, lambda tmp: tf.saved_model.save(
        module, tmp, signatures={"serving_default": serve}))

    fn = tf.saved_model.load(output).signatures["serving_default"]
    split = task.dev_splits[0].name
    dev = list(data.labeled(cfg.data, task, split).get_tfdata().as_numpy_iterator())
    texts_a = [ex["text_a"].decode() for ex in dev]
    check = {}
    paths = rundir.RunDir(run_dir, cfg)
    predictions = paths.predictions("student", split)
    if os.path.isfile(predictions):
        expected = np.load(predictions)["logits"]
        got = []
        for i in range(0, len(dev), 64):
            batch = {"text_a": tf.constant(texts_a[i:i + 64])}
            if task.is_pair:
                batch["text_b"] = tf.constant([ex["text_b"].decode() for ex in dev[i:i + 64]])
            out = fn(**batch)
            got.append(out["score"].numpy()[:, None] if task.is_regression
                       else out["probabilities"].numpy())
        got = np.concatenate(got)
        want = expected if task.is_regression else tf.nn.softmax(expected).numpy()
        check = {"dev_examples": len(dev), "max_abs_difference": float(np.abs(got - want).max()),
                 "same_predictions": bool((got.argmax(-1) == want.argmax(-1)).all())
                 if not task.is_regression else None}
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(output) for f in fs)
    summary = {"export": os.path.abspath(output), "size_bytes": size,
               "latency_ms_batch_1": _latency_ms(fn, texts_a[:1], task.is_pair),
               "latency_ms_batch_32": _latency_ms(fn, (texts_a * 32)[:32], task.is_pair),
               "check_against_evaluation": check}
    rundir.write_json_atomic(paths.serving, summary)
    print(f"[export] {output}: {size / 1e6:.1f} MB, latency {summary['latency_ms_batch_1']} ms "
          f"(batch 1), {summary['latency_ms_batch_32']} ms (batch 32); check {check}")
    return summary


def run_encoder(run_dir: str, output: str) -> dict:
    """Exports the run's final student encoder alone in the TF Hub encoder format (the
    interchange format: any run can start from it), checked against the trained encoder.

    Raises:
      UserError: if the student's encoder did not run natively (its SavedModel is the
        hub encoder it started from; the classifier SavedModel holds the trained weights).
    """
    from students import model as student_model  # The student stages' own builder.

    cfg = run_config(run_dir)
    paths = rundir.RunDir(run_dir, cfg)
    stage = paths.final_stage
    weights = paths.weights(stage)
    if not os.path.isfile(weights + ".index"):
        raise UserError(f"{weights} does not exist; run the student stages first.")
    classifier = student_model.build(cfg, tasks.get(cfg.task), stage, start_from=weights)
    encoder = next(layer for layer in classifier.layers if layer.name == "encoder")
    if not hasattr(encoder, "bert_config"):
        raise UserError(f"{run_dir}: the student's encoder ran through hub.KerasLayer "
                        f"(native_encoder: false, or weights that do not map); its trained "
                        f"weights are in {paths.student_model}, which serves as a classifier.")
    encoders.export_native(encoder, output)
    probe = encoders.probe(encoder.bert_config)
    import tensorflow_hub as hub

    gap = float(np.abs(hub.KerasLayer(output)(probe)["pooled_output"]
                       - tf.cast(encoder(probe, training=False)["pooled_output"], tf.float32)).max())
    print(f"[export] {output}: the {stage} stage's encoder in the TF Hub format; pooled output "
          f"within {gap:.1e} of the trained encoder's")
    return {"encoder": os.path.abspath(output), "stage": stage, "max_abs_difference": gap}
