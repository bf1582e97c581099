"""Classifiers: an encoder's `pooled_output`, dropout and a dense layer to the task's outputs.

Teacher and student are the same kind of model (Devlin et al. 2019, Sec. 4.1).
`export` saves a trained one as a SavedModel whose `serving_default` maps the
encoder inputs to `logits`; `load` gives that back as a function, so a teacher
fine-tuned elsewhere can be supplied ready in the same format.
"""
from __future__ import annotations

import json
import os

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tf_keras as keras

from distill import distribute, encoders, rundir, training
from distill.errors import UserError

META = "classifier.json"


def build(encoder_handle: str, num_outputs: int, dropout: float,
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
        name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name="classifier")


def export(model: keras.Model, path: str, meta: dict) -> str:
    """Saves `model` with a `serving_default` signature and `classifier.json` beside it.

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

    def write(tmp):
        root = tf.train.Checkpoint(variables=list(model.variables))  # Any trackable root.
        tf.saved_model.save(root, tmp, signatures={"serving_default": serve})
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


def load(path: str):
    """Returns `fn(inputs) -> logits` for a classifier SavedModel, and its metadata.

    Raises:
      UserError: if `path` is not a classifier SavedModel.
    """
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise UserError(f"Classifier {path}: no saved_model.pb; expected a SavedModel written "
                        f"by `distill teacher`, `distill distill` or `distill finetune`.")
    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        raise UserError(f"Classifier {path} has no serving_default signature.")
    serve = loaded.signatures["serving_default"]
    meta = metadata(path)

    def fn(inputs):
        return serve(**{n: inputs[n] for n in encoders.INPUT_NAMES})["logits"]


    fn.loaded = loaded  # Keeps the variables alive as long as the function is.
    return fn, meta


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
