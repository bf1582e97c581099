"""Continued masked-LM pre-training of a student encoder through its `.mlm` subobject.

    distill mlm --student HANDLE --data domain.txt [more.txt ...] --output DIR

Adapts a pre-trained compact student to the task's domain before distillation
(the first step of Pre-trained Distillation, Turc et al. 2019, Sec. 3). Masking
is BERT's (Devlin et al. 2019, Sec. 3.1): 15% of word pieces are selected, never
[CLS]/[SEP]/[PAD] (tensorflow-text takes ceil(15%) of each sequence where BERT's
data script rounds; the same on long inputs); of those 80% become [MASK], 10% a
random token, 10% stay.
It is drawn anew for every batch of every epoch, so each epoch sees new masks
(dynamic masking, Liu et al. 2019), from a seed (the epoch's and the batch's number), so
the same command gives the same masks. Each epoch reads a uniform mix of all the text
files (`distill/mixing.py`); the heldout texts are a seeded draw from all of them. The result is exported in the same TF Hub
encoder format, `.mlm` included, so it plugs into `distill run` as the student;
the pipeline runs it as its first stage when `student.mlm.data` is set.
"""
from __future__ import annotations

import os
import shutil

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text as tf_text
import tf_keras as keras

from distill import (config as config_lib, data, distribute, encoders, mixing, rundir,
                     text, training, weights)
from distill.errors import UserError

MLM_INPUTS = (*encoders.INPUT_NAMES, "masked_lm_positions")


def _special_ids(vocab_file: str) -> dict:
    vocab = text.read_vocab(vocab_file)
    if "[MASK]" not in vocab:
        raise UserError(f"Vocab {vocab_file} has no [MASK] token; expected a BERT WordPiece vocab.")
    return {t: vocab.index(t) for t in text.SPECIAL_TOKENS} | {"size": len(vocab)}


class SeededMaskValues(tf_text.MaskValuesChooser):
    """BERT's 80% [MASK] / 10% random token / 10% unchanged, drawn from `seed` (stateless): the
    same batch gets the same masks whatever the thread timing of a parallel map."""

    def __init__(self, vocab_size: int, mask_token: int, seed: tf.Tensor):
        super().__init__(vocab_size, mask_token, mask_token_rate=0.8, random_token_rate=0.1)
        self.seed = seed

    def get_mask_values(self, masked_lm_ids):
        flat = masked_lm_ids.flat_values
        draw = tf.random.stateless_uniform(tf.shape(flat), seed=self.seed)
        random_ids = tf.random.stateless_uniform(tf.shape(flat), seed=self.seed + [0, 1],
                                                 maxval=self.vocab_size, dtype=flat.dtype)
        values = tf.where(draw < 0.8, tf.cast(self.mask_token, flat.dtype),
                          tf.where(draw < 0.9, random_ids, flat))
        return masked_lm_ids.with_flat_values(values)


def _seeded_shuffle(seed: tf.Tensor):
    """A stateless shuffle for tensorflow-text's selector; each row's draw also depends on its
    first position (rows are shuffled one at a time)."""
    def shuffle(positions):
        first = tf.cast(tf.reduce_min(tf.concat([positions, [0]], 0)), tf.int64)
        draw = tf.random.stateless_uniform(tf.shape(positions), seed=seed + [0, 7919 * first + 2])
        return tf.gather(positions, tf.argsort(draw))
    return shuffle


class Masker:
    """Raw text batches and a seed -> masked encoder inputs with `masked_lm_{positions,ids,
    weights}`; the masks depend on the seed alone (`tf.random` stateless ops).

    One traced function serves every dataset that maps it: tracing tensorflow-text's
    masking costs seconds, and an MLM stage builds a dataset per epoch and per evaluation.
    """

    def __init__(self, preprocessor, vocab_file: str, seq_length: int, max_predictions: int,
                 selection_rate: float = 0.15):
        ids = _special_ids(vocab_file)
        self.preprocessor, self.ids = preprocessor, ids
        self.seq_length, self.max_predictions = seq_length, max_predictions
        self.selection_rate = selection_rate
        self._masked = tf.function(self._mask, input_signature=[
            tf.TensorSpec([None], tf.string), tf.TensorSpec([2], tf.int64)])

    def __call__(self, texts: tf.Tensor, seed) -> dict:
        """Args: texts, a batch of strings; seed, two integers (e.g. epoch seed, batch)."""
        return self._masked(texts, tf.cast(seed, tf.int64))

    def _mask(self, texts: tf.Tensor, seed: tf.Tensor) -> dict:
        selector = tf_text.RandomItemSelector(
            max_selections_per_batch=self.max_predictions, selection_rate=self.selection_rate,
            unselectable_ids=[self.ids["[CLS]"], self.ids["[SEP]"], self.ids["[PAD]"]],
            shuffle_fn=_seeded_shuffle(seed))
        chooser = SeededMaskValues(self.ids["size"], self.ids["[MASK]"], seed + [1, 0])
        tokens = self.preprocessor.tokenize(texts).merge_dims(-2, -1)[:, : self.seq_length - 2]
        ids, _ = tf_text.combine_segments([tf.cast(tokens, tf.int32)], self.ids["[CLS]"],
                                          self.ids["[SEP]"])
        masked, positions, targets = tf_text.mask_language_model(ids, selector, chooser)
        word_ids, mask = tf_text.pad_model_inputs(masked, max_seq_length=self.seq_length)
        positions, weights = tf_text.pad_model_inputs(positions, max_seq_length=self.max_predictions)
        targets, _ = tf_text.pad_model_inputs(targets, max_seq_length=self.max_predictions)
        longest = tf.reduce_max(tf.reduce_sum(mask, axis=1))
        predictions = tf.maximum(1, tf.cast(tf.reduce_max(tf.reduce_sum(weights, axis=1)), tf.int32))
        return {"input_word_ids": word_ids[:, :longest], "input_mask": mask[:, :longest],
                "input_type_ids": tf.zeros_like(word_ids[:, :longest]),
                "masked_lm_positions": tf.cast(positions[:, :predictions], tf.int32),
                "masked_lm_ids": tf.cast(targets[:, :predictions], tf.int32),
                "masked_lm_weights": tf.cast(weights[:, :predictions], tf.float32),
                # The unmasked ids, so tests can check the 80/10/10 statistics.
                "original_ids": tf_text.pad_model_inputs(ids, self.seq_length)[0][:, :longest]}


def mlm_loss(logits, batch):
    """Mean cross-entropy over the masked positions that exist (weight 1)."""
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(batch["masked_lm_ids"],
                                                               tf.cast(logits, tf.float32))
    weights = batch["masked_lm_weights"]
    loss = tf.math.divide_no_nan(tf.reduce_sum(per_token * weights), tf.reduce_sum(weights))
    return loss, {"mlm": loss}


def _load_mlm(handle: str, native: bool = True, seed: int | None = None,
              recompute: bool = False):
    """(the loaded SavedModel, the encoder to train: ours with its `.mlm` head where the
    weights map, else the SavedModel's own, and a Keras model of its MLM logits)."""
    loaded, loadable = encoders.open_saved(handle)
    if not hasattr(loaded, "mlm"):
        raise UserError(f"Encoder {handle!r} has no .mlm subobject; expected a TF Hub BERT "
                        f"encoder exported with its masked-LM head.")
    if not hasattr(loaded, "vocab_file"):
        raise UserError(f"Encoder {handle!r} carries no vocab_file asset; pass --preprocessor.")
    inputs = {n: keras.Input((None,), dtype=tf.int32, name=n) for n in MLM_INPUTS}
    encoder, head = loaded, hub.KerasLayer(loaded.mlm, trainable=True, name="mlm")
    if native:
        try:
            encoder = encoders.native_from(loaded, loadable, seed=seed, with_mlm=True,
                                           recompute=recompute)
            head = encoder.mlm
        except weights.Unmapped as e:
            encoders.say_hub(handle, str(e), recompute, stage="mlm")
    return loaded, encoder, keras.Model(inputs, head(inputs)["mlm_logits"])


def heldout_loss(model, batches) -> float:
    total, count = 0.0, 0.0
    for batch in batches:
        loss, _ = mlm_loss(model({n: batch[n] for n in MLM_INPUTS}, training=False), batch)
        weight = float(tf.reduce_sum(batch["masked_lm_weights"]))
        total, count = total + float(loss) * weight, count + weight
    return total / max(count, 1.0)


def train(handle: str, text_files: list[str], encoder_dir: str, workdir: str,
          mlm: config_lib.MLMConfig, seed: int, native: bool = True,
          recompute: bool = False) -> dict:
    """Continues MLM training of `handle` on `text_files` as `mlm` says; exports `encoder_dir`.

    Checkpoints and TensorBoard logs go to `workdir`, so a rerun resumes.

    Returns a summary (held-out MLM loss before and after, steps, the encoder's path).
    """
    schedule, seq_length, max_predictions = mlm.train, mlm.seq_length, mlm.max_predictions
    loaded, encoder, model = _load_mlm(handle, native, seed, recompute)
    vocab = loaded.vocab_file.asset_path.numpy().decode()
    preprocessor = text.WordPiecePreprocessor(vocab, bool(loaded.do_lower_case.numpy()))
    counts = data.plain_lines(text_files)
    count = sum(counts)
    n_heldout = max(1, int(count * mlm.heldout))
    # The heldout texts: a seeded draw from all the files, not the last file's tail.
    is_heldout = np.zeros(count, bool)
    is_heldout[np.random.default_rng(seed).choice(count, n_heldout, replace=False)] = True
    heldout_mask = tf.constant(is_heldout)
    masker = Masker(preprocessor, vocab, seq_length, max_predictions)

    def masked(epoch_seed):
        return lambda i, texts: masker(texts, tf.stack([tf.constant(epoch_seed, tf.int64), i]))

    def heldout_batches():  # In file order, with the same masks at every evaluation.
        texts = tf.data.TextLineDataset(list(text_files))
        return (tf.data.Dataset.zip((tf.data.Dataset.range(count), texts))
                .filter(lambda i, _: heldout_mask[i]).map(lambda _, t: data.drop_cr(t))
                .batch(schedule.batch_size).enumerate().map(masked(-1 - seed)))

    def make_dataset(epoch):  # Each epoch a uniform mix of every file (distill/mixing.py).
        epoch_seed = training.epoch_seed(seed, epoch)
        texts = (mixing.mixed(list(text_files), counts, tf.data.TextLineDataset, epoch_seed)
                 .filter(lambda i, _: tf.logical_not(heldout_mask[i]))
                 .map(lambda _, t: data.drop_cr(t)))
        return (texts.shuffle(training.SHUFFLE_BUFFER, seed=epoch_seed,
                              reshuffle_each_iteration=False)
                .batch(schedule.batch_size).enumerate()
                .map(masked(epoch_seed), num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    before = heldout_loss(model, heldout_batches())
    summary = training.fit(model, make_dataset, count - n_heldout, mlm_loss, schedule,
                           workdir, desc="mlm", input_names=MLM_INPUTS)
    after = heldout_loss(model, heldout_batches())
    print(f"[mlm] held-out MLM loss {before:.4f} -> {after:.4f} ({n_heldout} texts)")
    source_config = os.path.join(handle, "bert_config.json")

    def write(tmp):
        tf.saved_model.save(loaded, tmp)  # The same object: core API and .mlm, trained weights.
        if os.path.isfile(source_config):
            shutil.copyfile(source_config, os.path.join(tmp, "bert_config.json"))

    with distribute.writes_to(encoder_dir) as target:
        if encoder is loaded:
            rundir.replace_dir(target, write)
        else:  # Ours, trained: exported in the same TF Hub format.
            encoders.export_native(encoder, target)
    summary.update({"heldout_loss_before": before, "heldout_loss_after": after,
                    "texts": count, "heldout_texts": n_heldout, "encoder": encoder_dir})
    return summary


def run(cfg: config_lib.Config, run_dir: str) -> dict:
    """The pipeline stage: MLM on `student.mlm.data`, before distillation."""
    paths = rundir.RunDir(run_dir, cfg)
    inputs = {"encoder": cfg.student.encoder, "seed": cfg.seed,
              "mlm": config_lib.to_dict(cfg)["student"]["mlm"]}
    return rundir.stage("mlm", paths.stage_dir("mlm"), inputs, lambda: train(
        cfg.student.encoder, cfg.student.mlm.data, paths.mlm_encoder, paths.workdir("mlm"),
        cfg.student.mlm, cfg.seed, cfg.native_encoder, cfg.recompute))
