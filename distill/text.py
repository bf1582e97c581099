"""Text to encoder inputs: WordPiece tokenizing and BERT packing, with dynamic padding.

A preprocessor is anything with the TF Hub `bert_en_uncased_preprocess/3` API:
`tokenize(strings) -> int32 ragged [batch, words, pieces]` and
`bert_pack_inputs(segments, seq_length) -> {input_word_ids, input_mask,
input_type_ids}`. `load(spec)` takes a hub handle or SavedModel directory, or a
WordPiece `vocab.txt`, which `WordPiecePreprocessor` serves in-process with
tensorflow-text; `export` saves that same module in the hub format, so both
routes run the same packing code.

    python -c "from distill import text; text.export('/tmp/pre', 'vocab.txt')"
"""
from __future__ import annotations

import hashlib
import os
from typing import Callable

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text as tf_text

from distill import distribute, handles, rundir
from distill.config import SEQ_LENGTH, check_seq_length
from distill.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# What a Packer adds to a batch: the TF Hub encoder API's inputs (`encoders.INPUT_NAMES`).
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
PAD_MULTIPLE = 8  # Where shapes are compiled: few distinct ones (`pad_multiple`).


def pad_multiple(jit_compile: bool) -> int:
    """What a batch's width is rounded up to: `PAD_MULTIPLE` where each shape is compiled
    (XLA) or runs on an accelerator; 1 on a CPU, where a new shape costs little and padding
    costs every step (benchmarks/RESULTS.md)."""
    return PAD_MULTIPLE if jit_compile or distribute.accelerated() else 1


def pack_segments(segments, seq_length, cls_id, sep_id, pad_id=0):
    """Packs 1 or 2 tokenized segments as BERT does: [CLS] a [SEP] (b [SEP]), padded.

    Long inputs are trimmed round-robin, which leaves the shorter segment whole
    when it fits, like BERT's `_truncate_seq_pair`; it never fails on long input.
    """
    segments = [s.merge_dims(-2, -1) if s.ragged_rank == 2 else s for s in segments]
    segments = [tf.cast(s, tf.int32) for s in segments]
    budget = seq_length - len(segments) - 1  # room left after [CLS] and one [SEP] each
    trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
    ids, type_ids = tf_text.combine_segments(trimmed, start_of_sequence_id=cls_id,
                                             end_of_segment_id=sep_id)
    word_ids, mask = tf_text.pad_model_inputs(ids, max_seq_length=seq_length, pad_value=pad_id)
    type_ids, _ = tf_text.pad_model_inputs(type_ids, max_seq_length=seq_length, pad_value=0)
    return dict(input_word_ids=word_ids, input_mask=mask, input_type_ids=type_ids)


class _PackInputs(tf.Module):
    """`bert_pack_inputs` with an overridable `seq_length`, traced for 1-2 segments."""

    def __init__(self, cls_id, sep_id, pad_id, default_seq_length):
        super().__init__()
        self._ids = (cls_id, sep_id, pad_id)
        self._default_seq_length = default_seq_length
        for ragged_rank in (1, 2):
            for num_segments in (1, 2):
                specs = [tf.RaggedTensorSpec([None] * (ragged_rank + 1), tf.int32)] * num_segments
                self.__call__.get_concrete_function(specs, seq_length=tf.TensorSpec([], tf.int32))

    @tf.function(autograph=False)
    def __call__(self, inputs, seq_length=None):
        if seq_length is None:
            seq_length = self._default_seq_length
        return pack_segments(inputs, seq_length, *self._ids)


class WordPiecePreprocessor(tf.Module):
    """A WordPiece vocab with the TF Hub preprocessor API.

    tensorflow-text's FastBertTokenizer (normalization, splitting and WordPiece in one
    linear-time pass) gives the word pieces of its BertTokenizer, ids for ids (checked on
    every text of ../shared/data, tests/test_text.py), 4x faster; training tokenizes every
    epoch beside the training step. A piece without the `##` prefix starts a word, which
    gives back the API's [batch, words, pieces].
    """

    def __init__(self, vocab_file: str, lower_case: bool = True,
                 seq_length: int = SEQ_LENGTH):
        super().__init__()
        vocab = read_vocab(vocab_file)
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = tf.Variable(lower_case, trainable=False)
        self._tokenizer = tf_text.FastBertTokenizer(
            vocab, token_out_type=tf.int64, unknown_token="[UNK]",
            lower_case_nfd_strip_accents=lower_case)
        self._continues = tf.constant([t.startswith("##") for t in vocab])
        self.bert_pack_inputs = _PackInputs(vocab.index("[CLS]"), vocab.index("[SEP]"),
                                            vocab.index("[PAD]"), seq_length)
        self._seq_length = seq_length

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, text):
        pieces = tf.cast(self._tokenizer.tokenize(text), tf.int32)  # [batch, (pieces)]
        starts = tf.logical_not(tf.gather(self._continues, pieces.flat_values))
        words = tf.RaggedTensor.from_row_starts(pieces.flat_values,
                                                tf.where(starts)[:, 0])  # [all words, (pieces)]
        per_example = tf.reduce_sum(tf.cast(pieces.with_flat_values(starts), tf.int64), axis=1)
        return tf.RaggedTensor.from_row_lengths(words, per_example)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        return self.bert_pack_inputs([self.tokenize(text)], seq_length=self._seq_length)


def read_vocab(vocab_file: str) -> list[str]:
    """A WordPiece vocab's tokens, one per line, checked for BERT's special tokens.

    Raises:
      UserError: a missing file, or one without [PAD], [UNK], [CLS] and [SEP].
    """
    if not os.path.isfile(vocab_file):
        raise UserError(f"Vocab file {vocab_file!r} does not exist.")
    with open(vocab_file, encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in vocab]
    if missing:
        raise UserError(f"Vocab file {vocab_file!r} lacks the special tokens {missing}; "
                        f"expected a BERT WordPiece vocab with one token per line.")
    return vocab


def export(path: str, vocab_file: str, lower_case: bool = True,
           seq_length: int = SEQ_LENGTH) -> str:
    """Saves a preprocessor SavedModel in the `bert_en_uncased_preprocess/3` format."""
    module = WordPiecePreprocessor(vocab_file, lower_case, seq_length)
    return rundir.replace_dir(path, lambda tmp: tf.saved_model.save(module, tmp))


_LOADED: dict = {}


def load(spec: str, lower_case: bool = True):
    """Loads a preprocessor: a WordPiece `vocab.txt` file, or a hub handle / SavedModel dir.

    Loaded once per process and then reused (outside tf.distribute strategies, whose scopes
    would own its variable): a vocab's preprocessor traces its packing functions when it is
    built, seconds each time, and a run builds a packer in every stage and evaluation. The
    key includes the file's (or SavedModel's) size and modification time.

    Raises:
      UserError: if the file or handle does not exist or cannot be loaded.
    """
    if tf.distribute.has_strategy():
        return _load(spec, lower_case)
    key = (os.path.abspath(spec) if os.path.exists(spec) else spec, lower_case, _stamp(spec))
    if key not in _LOADED:
        _LOADED[key] = _load(spec, lower_case)
    return _LOADED[key]


def _stamp(spec: str):
    path = os.path.join(spec, "saved_model.pb") if os.path.isdir(spec) else spec
    if not os.path.isfile(path):
        return None
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _load(spec: str, lower_case: bool):
    if os.path.isfile(spec):
        return WordPiecePreprocessor(spec, lower_case)
    loadable = handles.resolve(spec, "Preprocessor", files_too=True)
    try:
        module = hub.load(loadable)
    except Exception as e:
        raise UserError(f"Preprocessor {spec!r} could not be loaded: {e}") from e
    if not hasattr(module, "tokenize") or not hasattr(module, "bert_pack_inputs"):
        raise UserError(f"Preprocessor {spec!r} lacks `tokenize` and `bert_pack_inputs`; "
                        f"expected the API of bert_en_uncased_preprocess/3.")
    return module


def vocab_file(spec: str) -> str | None:
    """The WordPiece vocab of a preprocessor: the vocab.txt itself, or its SavedModel's asset."""
    if os.path.isfile(spec):
        return spec
    local = handles.resolve(spec, "Preprocessor", fetch=True)
    candidate = os.path.join(local, "assets", "vocab.txt")
    return candidate if os.path.isfile(candidate) else None


def fingerprint(spec: str, lower_case: bool = True) -> dict:
    """What identifies a tokenizer: the vocab's sha256 and casing (for store manifests)."""
    vocab = vocab_file(spec)
    sha = hashlib.sha256(open(vocab, "rb").read()).hexdigest() if vocab else None
    return {"handle": spec, "vocab_sha256": sha, "lower_case": lower_case}


class Packer:
    """Maps batches of `{text_a, text_b}` to encoder inputs, padded to the batch's longest.

    Tokenizes and packs ([CLS] a [SEP] b [SEP]) with the preprocessor. A callable
    for `Dataset.map` after `batch`: other features pass through unchanged.
    `seq_length` may be changed after construction.
    """

    def __init__(self, preprocessor, seq_length: int, pair: bool = False):
        self.preprocessor = preprocessor
        self.seq_length = seq_length
        self.pair = pair
        check_seq_length(seq_length, pair)

    def __call__(self, features: dict, full_length: bool = False, multiple: int = 1) -> dict:
        """Encodes a batch, padded to its longest rounded up to `multiple` (fewer distinct
        shapes to trace or compile), or with `full_length` to `seq_length` (TPUs)."""
        fields = ["text_a", "text_b"] if self.pair else ["text_a"]
        segments = [self.preprocessor.tokenize(features[f]) for f in fields]
        packed = self.preprocessor.bert_pack_inputs(
            segments, seq_length=tf.constant(self.seq_length, tf.int32))
        out = {k: v for k, v in features.items() if k not in ("text_a", "text_b")}
        out.update({k: tf.cast(v, tf.int32) for k, v in packed.items()})
        return out if full_length else cut_to_longest(out, multiple)


def cut_to_longest(batch: dict, multiple: int = 1) -> dict:
    """A packed batch cut after its longest example, rounded up to `multiple`."""
    longest = tf.reduce_max(tf.reduce_sum(batch["input_mask"], axis=1))
    width = tf.minimum(tf.shape(batch["input_mask"])[1], -(-longest // multiple) * multiple)
    return {k: v[:, :width] if k in INPUT_NAMES else v for k, v in batch.items()}


def sorted_by_length(window: dict, packer: Callable[[dict], dict]) -> dict:
    """A window of examples packed by `packer` (a `Packer`, its options set) and reordered
    by their word pieces (stably), with `position`, each example's place in the window, so
    that an order can be restored. Raw text passes through.

    Training and labeling both batch from such windows (`cut_to_longest` then cuts each batch): a
    batch of equally long examples pads to its own length. Sorting by word pieces rather
    than by bytes pads 0.87 of an SST-2 window's positions with real word pieces, not 0.61
    (benchmarks/RESULTS.md).
    """
    packed = {**window, **packer(window)}
    order = tf.argsort(tf.reduce_sum(packed["input_mask"], axis=1), stable=True)
    return {"position": order, **{k: tf.gather(v, order) for k, v in packed.items()}}


def packer(side, pair: bool) -> Packer:
    """The packer of a model's config section (`teacher` or `student`): its preprocessor,
    casing and seq_length."""
    return Packer(load(side.preprocessor, side.lower_case), side.seq_length, pair)
