"""Classifiers: an encoder's `pooled_output`, dropout and a dense layer to the task's outputs.

Teacher and student are the same kind of model (Devlin et al. 2019, Sec. 4.1).
`export` saves a trained one as a SavedModel whose `serving_default` maps the
encoder inputs to `logits`; `load` gives that back as a function, so a teacher
fine-tuned elsewhere can be supplied ready in the same format.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tf_keras as keras

from distill import distribute, encoders, rundir, training, weights
from distill.errors import UserError

META = "classifier.json"
HEAD = "logits"  # The output layer's name.


def build(encoder_handle: str | None, num_outputs: int, dropout: float,
          encoder: keras.layers.Layer | None = None, seed: int = 0,
          native: bool = True, recompute: bool = False) -> keras.Model:
    """A classifier over the encoder at `encoder_handle` (or an already loaded `encoder`).

    The new output layer and the native encoder's dropout are drawn from `seed`, so a run's
    seed fixes them. The logits are computed in float32 under any precision policy.
    """
    inputs = {n: keras.Input((None,), dtype=tf.int32, name=n) for n in encoders.INPUT_NAMES}
    encoder = encoder or encoders.load(encoder_handle, trainable=True, seed=seed, native=native,
                                       recompute=recompute)
    pooled = encoder(inputs)["pooled_output"]
    x = encoders.CheckpointedDropout(dropout, seed, name="dropout")(pooled)
    logits = keras.layers.Dense(
        num_outputs, kernel_initializer=keras.initializers.TruncatedNormal(stddev=encoders.INIT_STDDEV, seed=seed),
        name=HEAD, dtype="float32")(x)
    return keras.Model(inputs, logits, name="classifier")


def export(model: keras.Model, path: str, meta: dict) -> str:
    """Saves `model` with a `serving_default` signature and `classifier.json` beside it
    (`meta`, and a native encoder's sizes and compute dtype, `bert_config` and
    `compute_dtype`, for `load`).

    What is saved is the model's variables (as `variables` of the loaded object, where a
    Keras SavedModel has them too) and that signature, not the Keras model: Keras would also
    trace every layer's call for its own loader (5-7 s of a tiny model's 6-8 s save, and
    1.5 s more at load); every reader here (labeling, evaluation, the exports, the
    converters) uses the signature only.
    """
    spec = {n: tf.TensorSpec([None, None], tf.int32, name=n) for n in encoders.INPUT_NAMES}

    @tf.function(input_signature=[spec])
    def serve(inputs):
        return {"logits": tf.cast(model(inputs, training=False), tf.float32)}

    native = [layer for layer in model.layers if hasattr(layer, "bert_config")]
    if native:  # Its serving graph computes in the dtype the encoder was built in.
        meta = {**meta, "bert_config": dataclasses.asdict(native[0].bert_config),
                "compute_dtype": native[0].compute_dtype}

    def write(tmp):
        root = tf.train.Checkpoint(variables=list(model.variables))  # Any trackable root.
        encoders.save(root, tmp, signatures={"serving_default": serve})
        with open(os.path.join(tmp, META), "w") as f:
            json.dump(meta, f, indent=2)

    with distribute.writes_to(path) as target:  # Every worker saves; the chief's copy is kept.
        rundir.replace_dir(target, write)
    return path


def metadata(path: str) -> dict:
    """What `export` recorded beside a classifier SavedModel (task, encoder, params, ...)."""
    if not os.path.isfile(os.path.join(path, META)):
        return {}
    with open(os.path.join(path, META)) as f:
        return json.load(f)


def load(path: str, native: bool = True):
    """Returns `fn(inputs) -> logits` for a classifier SavedModel, and its metadata.

    With `native` (the default) the classifier is rebuilt as our Keras encoder and head with
    the SavedModel's weights (`native_from`): faster than its serving graph and in the
    precision policy's dtypes. A classifier whose weights do not map runs its
    `serving_default` signature instead (`signature`), with one line saying why.

    Raises:
      UserError: if `path` is not a classifier SavedModel.
    """
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise UserError(f"Classifier {path}: no saved_model.pb; expected a SavedModel written "
                        f"by `distill teacher`, `distill distill` or `distill finetune`.")
    meta = metadata(path)
    if native:
        try:
            return native_from(path, meta), meta
        except weights.Unmapped as e:
            print(f"[classifier] {path} runs its serving signature: {e}")
    return signature(path), meta


def signature(path: str):
    """The classifier SavedModel's `serving_default` as `fn(inputs) -> logits`.

    Raises:
      UserError: if it has none.
    """
    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        raise UserError(f"Classifier {path} has no serving_default signature.")
    serve = loaded.signatures["serving_default"]

    def fn(inputs):
        return serve(**{n: inputs[n] for n in encoders.INPUT_NAMES})["logits"]

    fn.loaded = loaded  # Keeps the variables alive as long as the function is.
    return fn


def native_from(path: str, meta: dict):
    """`fn(inputs) -> float32 logits` of our own classifier with the weights of the SavedModel
    at `path`, one trace for every batch shape.

    Its logits on a probe batch are checked against the SavedModel's signature in float32
    (1e-4; 2% of the logits' scale where the signature computes in bfloat16, as a classifier
    trained under `precision: bfloat16` does). The signature runs first and is freed before our model is built, whose weights
    are then read one by one from the checkpoint: the process never holds two copies. Under
    a mixed-precision policy the model is built again with its weights stored in the compute
    dtype (bfloat16): the mixed policy would cast every kernel at every call, a tenth of
    BERT-Base's labeling time. The encoder's sizes come from `meta["bert_config"]` (written
    by `export`), or else as `_sizes` finds them.

    Raises:
      UserError: if the SavedModel has no signature.
      weights.Unmapped: if the weights do not map or the logits differ.
    """
    reference = signature(path)
    saved = {v.name[: -len(":0")]: v for v in reference.loaded.variables}
    if not {f"{HEAD}/kernel", f"{HEAD}/bias"} <= set(saved):
        raise weights.Unmapped(f"it has no {HEAD}/kernel and {HEAD}/bias")
    cfg = _sizes(meta, saved, path)
    batch = encoders.probe(cfg)
    with distribute.in_float32():
        want = np.asarray(encoders.first_replica(reference, batch))
    del reference, saved  # The SavedModel's copy of the weights goes before ours comes
    gc.collect()  # (its objects refer to each other: only a collection frees them).
    tensors = encoders.checkpoint_tensors(path)
    with distribute.in_float32():
        model = _native(tensors, cfg, path, "float32")
        gap = float(np.abs(want - np.asarray(encoders.first_replica(model, batch))).max())
    if not gap <= _tolerance(meta, want):
        raise weights.Unmapped(f"its logits differ from its serving signature's by {gap:.2g}")
    dtype = keras.mixed_precision.global_policy().compute_dtype
    if dtype != "float32":
        del model
        gc.collect()
        model = _native(tensors, cfg, path, dtype)
    spec = {n: tf.TensorSpec([None, None], tf.int32, name=n) for n in encoders.INPUT_NAMES}

    @tf.function(input_signature=[spec])
    def run(inputs):
        return tf.cast(model(inputs, training=False), tf.float32)

    def fn(inputs):
        return run({n: inputs[n] for n in encoders.INPUT_NAMES})

    fn.model = model
    return fn


def _tolerance(meta: dict, want: np.ndarray) -> float:
    """How far our float32 logits may be from the signature's: a bfloat16 graph rounds to 8
    bits at every step; a wrong mapping differs by the logits' whole scale."""
    if meta.get("compute_dtype", "float32") == "float32":
        return 1e-4
    return 2e-2 * max(1.0, float(np.abs(want).max()))


def _sizes(meta: dict, saved: dict, path: str) -> encoders.BertConfig:
    """The classifier's encoder sizes: from `meta["bert_config"]`, or (classifiers written
    before it was) from its weights and the bert_config.json of the encoder it was built on
    (`meta["encoder"]`) where that is a local directory, else its own graph."""
    if "bert_config" in meta:
        return encoders.BertConfig(**meta["bert_config"])
    encoder = str(meta.get("encoder", ""))
    known = encoder and os.path.isfile(os.path.join(encoder, "bert_config.json"))
    return encoders.saved_config(saved, encoder if known else path)


def _native(tensors, cfg: encoders.BertConfig, path: str, dtype: str) -> keras.Model:
    """Our classifier with weights and computation in `dtype` (the head's output in float32),
    its weights from `tensors` ({saved name: array})."""
    encoder = encoders.assigned(tensors, cfg, path, dtype=dtype)
    model = build(None, int(np.shape(tensors[f"{HEAD}/bias"])[0]), 0.0, encoder=encoder)
    model.get_layer(HEAD).set_weights([tensors[f"{HEAD}/kernel"], tensors[f"{HEAD}/bias"]])
    return model


def predict(fn, dataset: tf.data.Dataset) -> dict[str, np.ndarray]:
    """Runs `fn` over batches of encoded inputs; returns ids, labels and logits in order."""
    ids, labels, logits = [], [], []
    for batch in dataset:
        logits.append(fn({n: batch[n] for n in encoders.INPUT_NAMES}).numpy())
        ids.append(batch["id"].numpy())
        labels.append(batch["label"].numpy())
    return {"id": np.concatenate(ids), "label": np.concatenate(labels),
            "logits": np.concatenate(logits)}


def predict_source(fn, source, packer, batch_size: int) -> dict[str, np.ndarray]:
    """A loaded classifier (`load`) on every example of a `data.Source`, in order."""
    return predict(fn, training.batches(source.get_tfdata(), packer, batch_size))


def count_params(model: keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))
