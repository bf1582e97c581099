"""The transfer set D_T: its sources, the paper's recipes, and the filters before labeling.

Entries of `data.transfer`, read in order:

    labeled:train                     D_L's train split (its gold labels are kept)
    text:PATH                         one text per line (`a<TAB>b` for pair tasks)
    tfds:NAME:SPLIT:FIELDS            a TFDS dataset's text fields, labels dropped, e.g.
                                      tfds:snli:train:premise,hypothesis
    recipe:nli_star                   the paper's transfer sets (Turc et al. 2019):
    recipe:movie_reviews_star         see RECIPES

An entry may also be a mapping `{source: SPEC, sample: N, max_examples: N, seed: S,
sentences: true}`: a seeded random subset of N examples, the first N, and documents split
into sentences (single-sentence tasks only). Several entries mix their sources.

Before labeling, the whole set passes, in order: sampling and capping per source, then the
removal of exact duplicates (the first occurrence stays) and of every example whose
normalised text (lower-cased, letters and digits only; for pairs either side or the pair)
occurs in the task's dev or test sets (the contamination guard). The task's own dev and
test splits are refused as transfer data. `data.contamination_guard: false` turns the guard
and that refusal off; the manifest and the report then say so. Each source's counts before
and after each filter go into the store's manifest.

The entries' form and the recipes live in `distill/transfer_spec.py` (read when the
config loads).

    python -c "from distill import config, transfer, tasks; print(transfer.build(config.load('configs/demo.yaml').data, tasks.get('sst2')))"
"""
from __future__ import annotations

import hashlib
import os
import re

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from distill import data, tasks as tasks_lib
from distill.transfer_spec import Entry, entries
from distill.errors import UserError

# Penn Treebank escapes in GLUE's tokenized text (SST-2: "-lrb-"), dropped before comparing
# with raw text such as movie-review snippets.
_PTB = re.compile(r"-(lrb|rrb|lsb|rsb|lcb|rcb)-")
_NOT_ALNUM = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Lower-cased letters and digits only: "It 's -LRB- very -RRB- good ." -> "itsverygood"."""
    return _NOT_ALNUM.sub("", _PTB.sub("", text.lower()))


def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _guard_keys(text_a: str, text_b: str) -> tuple[list[int], int | None]:
    """What the guard compares: the keys of each non-empty normalised side, and of the pair."""
    a, b = normalize(text_a), normalize(text_b)
    return [_key(t) for t in (a, b) if t], (_key(a + "\t" + b) if b else None)


def _own_eval_files(cfg_data, task: tasks_lib.Task) -> set[str]:
    """The task's dev and test files when D_L is a GLUE directory (absolute paths)."""
    kind, _, directory = cfg_data.labeled.partition(":")
    if kind != "glue_dir":
        return set()
    splits = [*task.dev_splits, *task.test_splits]
    return {os.path.realpath(os.path.join(directory, s.tsv)) for s in splits}


def open_source(entry: Entry, cfg_data, task: tasks_lib.Task) -> data.Source:
    """The source an entry names, after the refusal of dev/test data; no filtering yet.

    Raises:
      UserError: a missing file, an unknown dataset or field, a single-text source for a
        pair task, or (with the guard on) the task's own dev or test data.
    """
    kind, _, arg = entry.source.partition(":")
    guard = cfg_data.contamination_guard
    if entry.sentences and task.is_pair:
        raise UserError(f"data.transfer {entry.source!r}: `sentences` splits documents for "
                        f"single-sentence tasks; {task.name} is a sentence-pair task.")
    if kind == "labeled":
        evaluation = {s.name for s in (*task.dev_splits, *task.test_splits)}
        if guard and arg in evaluation:
            raise UserError(f"data.transfer {entry.source!r}: {arg} is an evaluation split of "
                            f"{task.name}; transfer data must not hold dev or test text (set "
                            f"data.contamination_guard=false to allow it, and say so).")
        source = data.labeled(cfg_data, task, arg, limit=cfg_data.max_transfer_examples)
    elif kind == "text":
        if guard and os.path.realpath(arg) in _own_eval_files(cfg_data, task):
            raise UserError(f"data.transfer {entry.source!r} is {task.name}'s own dev or test "
                            f"file; transfer data must not hold dev or test text.")
        source = data.get(entry.source, task, limit=cfg_data.max_transfer_examples)
    else:
        parts = arg.split(":")
        if len(parts) != 3 or not all(parts):
            raise UserError(f"data.transfer {entry.source!r}: expected tfds:NAME:SPLIT:FIELDS, "
                            f"e.g. tfds:snli:train:premise,hypothesis.")
        name, split, fields = parts
        source = data.limited(data.tfds_source(name, split, tuple(fields.split(",")), task),
                              cfg_data.max_transfer_examples)
    if entry.sentences:
        source = _sentences(source)
    return source


def _sentences(source: data.Source) -> data.Source:
    """Each document split into sentences (after . ! ? and a capital letter or a quote);
    HTML line breaks (IMDB's "<br />") become spaces. Ids gain "/s<k>". Its
    `total_examples` is -1: unknown until read."""
    def split(ex):
        text = tf.strings.regex_replace(ex["text_a"], r"<br\s*/?>", " ")
        text = tf.strings.regex_replace(text, r"([.!?][\"')\]]*)\s+([A-Z\"'(\[])", "\\1\x00\\2")
        pieces = tf.strings.strip(tf.strings.split(text, "\x00"))
        pieces = tf.boolean_mask(pieces, tf.strings.regex_full_match(pieces, r".*\w.*"))
        n = tf.shape(pieces, out_type=tf.int64)[0]
        ids = tf.strings.join([tf.fill([n], ex["id"]),
                               tf.strings.as_string(tf.range(n))], "/s")
        return tf.data.Dataset.from_tensor_slices({
            "id": ids, "text_a": pieces, "text_b": tf.fill([n], ""),
            "label": tf.fill([n], ex["label"])})

    make = source._make
    # The sentence count is known only once read: `build` counts what it reads.
    return data.Source(source.spec + "+sentences", source.split, -1, lambda: make().flat_map(split))


def _evaluation_keys(cfg_data, task: tasks_lib.Task) -> tuple[set, set]:
    """Normalised texts of the task's dev and test sets: (single sides, pairs)."""
    sides, pairs = set(), set()
    for split in (*task.dev_splits, *task.test_splits):
        try:
            source = data.get(cfg_data.labeled, task, split.name)
        except UserError as e:
            if split in task.test_splits and "does not exist" in str(e):
                continue  # A GLUE directory without test.tsv: nothing there to leak.
            raise
        for batch in source.get_tfdata().batch(4096).as_numpy_iterator():
            for a, b in zip(batch["text_a"], batch["text_b"]):
                side_keys, pair_key = _guard_keys(a.decode(), b.decode())
                sides.update(side_keys)
                if pair_key is not None:
                    pairs.add(pair_key)
    return sides, pairs


def build(cfg_data, task: tasks_lib.Task, progress: bool = True) -> tuple[data.Source, dict]:
    """D_T after sampling, capping, de-duplication and the contamination guard.

    One streaming pass over the sources decides which examples stay (a byte per
    example and an 8-byte hash per example are all it keeps); the returned
    source reads them again and keeps those, in order.

    Returns:
      (source, report): report["sources"] has, per source, its count as read and
      after each filter; report["contamination_guard"] whether the guard ran.
    """
    chosen = entries(cfg_data.transfer)
    sources = [open_source(e, cfg_data, task) for e in chosen]
    guard = cfg_data.contamination_guard
    sides, pairs = _evaluation_keys(cfg_data, task) if guard else (set(), set())
    picked, hashes, contaminated, report = [], [], [], []
    expected = [s.total_examples for s in sources]  # -1 where unknown until read.
    bar = tqdm(total=None if -1 in expected else sum(expected), desc="transfer", unit="ex",
               disable=not progress, mininterval=1.0)
    with bar:
        for entry, source in zip(chosen, sources):
            n = 0  # Counted as read, not taken from metadata.
            for batch in source.get_tfdata().batch(4096).as_numpy_iterator():
                keys = np.zeros(len(batch["text_a"]), np.uint64)
                dirty = np.zeros(len(keys), bool)
                for j, (a, b) in enumerate(zip(batch["text_a"], batch["text_b"])):
                    a, b = a.decode("utf-8", "replace"), b.decode("utf-8", "replace")
                    keys[j] = _key(a + "\t" + b)
                    if guard:
                        side_keys, pair_key = _guard_keys(a, b)
                        dirty[j] = any(k in sides for k in side_keys) or (
                            pair_key is not None and pair_key in pairs)
                hashes.append(keys)
                contaminated.append(dirty)
                n += len(keys)
                bar.update(len(keys))
            take = np.ones(n, bool)
            if entry.sample is not None and entry.sample < n:
                take[:] = False
                take[np.random.default_rng(entry.seed).choice(n, entry.sample, replace=False)] = True
            if entry.max_examples is not None:
                take &= np.cumsum(take) <= entry.max_examples
            picked.append(take)
            report.append({"source": entry.source, "read": n, "sampled": int(take.sum())})
    sizes = [r["read"] for r in report]
    keep, total = np.concatenate(picked), sum(sizes)
    hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    contaminated = np.concatenate(contaminated) if contaminated else np.zeros(0, bool)
    # Exact duplicates: the first kept occurrence of each (text_a, text_b) stays.
    kept_index = np.flatnonzero(keep)
    _, first = np.unique(hashes[kept_index], return_index=True)
    unique = np.zeros(total, bool)
    unique[kept_index[first]] = True
    offset = 0
    for row, size in zip(report, sizes):
        part = slice(offset, offset + size)
        row["after_duplicates"] = int(unique[part].sum())
        row["contaminated"] = int((unique[part] & contaminated[part]).sum())
        row["kept"] = row["after_duplicates"] - row["contaminated"]
        offset += size
    keep = unique & ~contaminated
    kept = int(keep.sum())
    if kept == 0:
        raise UserError(f"The transfer set is empty after its filters ({report}); expected at "
                        f"least one example.")
    mask, combined = tf.constant(keep), data.concatenate(sources)

    def make():
        return combined.get_tfdata().enumerate().filter(lambda i, _: mask[i]).map(lambda _, ex: ex)

    return (data.Source(combined.spec, "transfer", kept, make),
            {"sources": report, "contamination_guard": guard})
