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
removal of duplicates by normalised text (lower-cased, letters and digits only), across
all sources, the first occurrence staying, and the contamination guard: every example of
a source other than D_L's own train split whose pair or either side (a single text: the
text) occurs in the task's dev or test sets, or in the heldout split carved from train
for selection, is dropped. D_L's train split is never filtered by the guard: it is the
task's official training data. The task's own dev and test splits are refused as
transfer data. `data.contamination_guard: false` turns the guard and that refusal off;
the manifest and the report then say so. Each source's counts under each rule go into
the store's manifest. Preflight makes this decision before any stage trains; the label
stage reuses it (`decide`, kept in this process by a fingerprint of its inputs).

The entries' form and the recipes live in `distill/transfer_spec.py` (read when the
config loads).

    python -c "from distill import config, transfer, tasks; print(transfer.build(config.load('configs/demo.yaml').data, tasks.get('sst2')))"
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
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


@dataclasses.dataclass
class Keys:
    """Normalised keys of texts the transfer set must not hold: single sides and pairs."""

    sides: set = dataclasses.field(default_factory=set)
    pairs: set = dataclasses.field(default_factory=set)

    def add(self, source: data.Source) -> None:
        for batch in source.get_tfdata().batch(4096).as_numpy_iterator():
            for a, b in zip(batch["text_a"], batch["text_b"]):
                side_keys, pair_key = _guard_keys(a.decode(), b.decode())
                self.sides.update(side_keys)
                if pair_key is not None:
                    self.pairs.add(pair_key)

    def hit(self, side_keys: list[int], pair_key: int | None) -> bool:
        """The pair, or either side (a single text: the text), occurs among these keys."""
        return any(k in self.sides for k in side_keys) or (
            pair_key is not None and pair_key in self.pairs)


def _evaluation_keys(cfg_data, task: tasks_lib.Task) -> Keys:
    """The task's dev and test texts (a missing GLUE test file has nothing to leak)."""
    keys = Keys()
    for split in (*task.dev_splits, *task.test_splits):
        try:
            keys.add(data.get(cfg_data.labeled, task, split.name))
        except UserError as e:
            if split in task.test_splits and "does not exist" in str(e):
                continue
            raise
    return keys


def _heldout_keys(cfg_data, task: tasks_lib.Task) -> Keys:
    """The split carved from train for selection (`data.heldout_fraction`), if any."""
    keys = Keys()
    if cfg_data.heldout_fraction > 0:
        keys.add(data.labeled(cfg_data, task, data.HELDOUT))
    return keys


@dataclasses.dataclass
class Decision:
    """Which examples of the transfer set stay, decided in one streaming pass (`decide`)."""

    key: str  # What it was decided from (`decision_key`).
    keep: np.ndarray  # One flag per example read, the sources one after the other.
    report: dict  # {"sources": [per-source counts], "contamination_guard": bool}

    @property
    def kept(self) -> int:
        return int(self.keep.sum())


# The decisions this process made, by key: preflight decides before the teacher trains and
# the label stage reuses the decision instead of reading every source again.
_DECISIONS: dict[str, Decision] = {}


def decision_key(cfg_data, task: tasks_lib.Task) -> str:
    """A fingerprint of everything the decision depends on, the local files' sizes and
    modification times included (a file edited since is read again)."""
    files = []
    for entry in entries(cfg_data.transfer):
        kind, _, arg = entry.source.partition(":")
        if kind == "text" and os.path.isfile(arg):
            files.append(arg)
    kind, _, directory = cfg_data.labeled.partition(":")
    if kind == "glue_dir" and os.path.isdir(directory):
        files += [os.path.join(directory, s.tsv) for s in task.splits
                  if os.path.isfile(os.path.join(directory, s.tsv))]
    stats = [(f, os.path.getsize(f), os.path.getmtime(f)) for f in files]
    fields = {k: getattr(cfg_data, k) for k in (
        "labeled", "transfer", "max_train_examples", "max_transfer_examples", "max_eval_examples",
        "contamination_guard", "heldout_fraction", "heldout_seed")}
    blob = json.dumps([task.name, fields, stats], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def decide(cfg_data, task: tasks_lib.Task, progress: bool = True) -> Decision:
    """Sampling, capping, de-duplication and the contamination guard, in one pass.

    Keeps a flag and an 8-byte hash per example, never the text. De-duplication
    compares the guard's normalised key across all sources and keeps the first
    occurrence (D_L's own, when `labeled:train` comes first). The guard never
    filters D_L's train split (its official training data); every other source
    loses each example whose pair or either side occurs in dev, test or the carved
    heldout split. Made once per process for the same inputs (`_DECISIONS`).

    Raises:
      UserError: when a source loses every example to the guard (it is the dev or
        test data under another name), or nothing at all is left; naming the counts.
    """
    key = decision_key(cfg_data, task)
    if key not in _DECISIONS:
        chosen = entries(cfg_data.transfer)
        sources = [open_source(e, cfg_data, task) for e in chosen]  # Each named if it fails.
        _DECISIONS[key] = _filtered(cfg_data, task, chosen, sources, key, "transfer", progress)
    return _DECISIONS[key]


def _filtered(cfg_data, task: tasks_lib.Task, chosen: list[Entry], sources: list[data.Source],
              key: str, desc: str, progress: bool) -> Decision:
    """The one streaming pass over `sources` and the rules after it (`decide`); refuses an
    empty result or a source that is all dev/test text."""
    guard = cfg_data.contamination_guard
    evaluation, heldout = ((_evaluation_keys(cfg_data, task), _heldout_keys(cfg_data, task))
                           if guard else (Keys(), Keys()))
    expected = [s.total_examples for s in sources]  # -1 where unknown until read.
    bar = tqdm(total=None if -1 in expected else sum(expected), desc=desc, unit="ex",
               disable=not progress, mininterval=1.0)
    guarded = [guard and entry.source != "labeled:train" for entry in chosen]
    with bar:
        parts = [_read_source(entry, source, evaluation if g else Keys(),
                              heldout if g else Keys(), bar)
                 for entry, source, g in zip(chosen, sources, guarded)]
    keep, report = _apply_rules(parts)
    for row, g in zip(report, guarded):
        row["guarded"] = g
    decision = Decision(key, keep, {"sources": report, "contamination_guard": guard})
    _refuse_empty(decision)
    return decision


def _read_source(entry: Entry, source: data.Source, evaluation: Keys, heldout: Keys,
                 bar) -> dict:
    """One source's pass: per example its normalised key and whether the guard's rules hit
    it (numpy arrays, 10 bytes an example), and the examples its sampling and cap take."""
    keys, in_eval, in_heldout = [], [], []
    for batch in source.get_tfdata().batch(4096).as_numpy_iterator():
        k = np.zeros(len(batch["text_a"]), np.uint64)
        e, h = np.zeros(len(k), bool), np.zeros(len(k), bool)
        for j, (a, b) in enumerate(zip(batch["text_a"], batch["text_b"])):
            a, b = a.decode("utf-8", "replace"), b.decode("utf-8", "replace")
            side_keys, pair_key = _guard_keys(a, b)
            k[j] = _key(normalize(a) + "\t" + normalize(b))
            e[j] = evaluation.hit(side_keys, pair_key)
            h[j] = heldout.hit(side_keys, pair_key)
        keys.append(k)
        in_eval.append(e)
        in_heldout.append(h)
        bar.update(len(k))
    keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    n = len(keys)  # Counted as read, not taken from metadata.
    take = np.ones(n, bool)
    if entry.sample is not None and entry.sample < n:
        take[:] = False
        take[np.random.default_rng(entry.seed).choice(n, entry.sample, replace=False)] = True
    if entry.max_examples is not None:
        take &= np.cumsum(take) <= entry.max_examples
    return {"source": entry.source, "keys": keys, "take": take,
            "in_eval": np.concatenate(in_eval) if in_eval else np.zeros(0, bool),
            "in_heldout": np.concatenate(in_heldout) if in_heldout else np.zeros(0, bool)}


def _apply_rules(parts: list[dict]) -> tuple[np.ndarray, list[dict]]:
    """De-duplication across all sources (the first taken occurrence stays), then the
    guard's rules; returns the keep flags and each source's counts under each rule."""
    keys = np.concatenate([p["keys"] for p in parts]) if parts else np.zeros(0, np.uint64)
    take = np.concatenate([p["take"] for p in parts]) if parts else np.zeros(0, bool)
    taken = np.flatnonzero(take)
    _, first = np.unique(keys[taken], return_index=True)  # Each key's first occurrence.
    unique = np.zeros(len(keys), bool)
    unique[taken[first]] = True
    keep, report, offset = np.zeros(len(keys), bool), [], 0
    for p in parts:
        part = slice(offset, offset + len(p["keys"]))
        in_eval = unique[part] & p["in_eval"]
        in_heldout = unique[part] & ~p["in_eval"] & p["in_heldout"]
        keep[part] = unique[part] & ~p["in_eval"] & ~p["in_heldout"]
        report.append({"source": p["source"], "read": len(p["keys"]),
                       "sampled": int(p["take"].sum()), "after_duplicates": int(unique[part].sum()),
                       "contaminated": int(in_eval.sum()), "in_heldout": int(in_heldout.sum()),
                       "kept": int(keep[part].sum())})
        offset += len(p["keys"])
    return keep, report


def _refuse_empty(decision: Decision) -> None:
    for row in decision.report["sources"]:
        if row["contaminated"] and row["contaminated"] == row["after_duplicates"]:
            raise UserError(f"data.transfer {row['source']!r}: all {row['contaminated']} of its "
                            f"examples occur in the task's dev or test sets; it is evaluation "
                            f"data, not transfer data. Nothing was written.")
    if decision.kept == 0:
        counts = "; ".join(f"{r['source']}: {r['read']} read, {r['kept']} kept"
                           for r in decision.report["sources"])
        raise UserError(f"The transfer set is empty after its filters ({counts}); expected at "
                        f"least one example. Nothing was written.")


def filter_external(cfg_data, task: tasks_lib.Task, source: data.Source,
                    name: str) -> tuple[np.ndarray, dict]:
    """The filters of `decide`, applied to one source from outside the config (labels a
    teacher made elsewhere, `distill import-labels`): its keep flags and its report.

    Raises:
      UserError: as `decide` does, for an empty or all dev/test source.
    """
    decision = _filtered(cfg_data, task, [Entry(source=name)], [source], name, "filters", True)
    return decision.keep, decision.report


def selected(cfg_data, task: tasks_lib.Task, decision: Decision) -> data.Source:
    """The transfer set as `decision` says: the kept examples, in source order."""
    sources = [open_source(e, cfg_data, task) for e in entries(cfg_data.transfer)]
    mask, combined = tf.constant(decision.keep), data.concatenate(sources)

    def make():
        return combined.get_tfdata().enumerate().filter(lambda i, _: mask[i]).map(lambda _, ex: ex)

    return data.Source(combined.spec, "transfer", decision.kept, make)


def build(cfg_data, task: tasks_lib.Task, progress: bool = True) -> tuple[data.Source, dict]:
    """D_T after its filters (`decide`), and the per-source report for the manifest."""
    decision = decide(cfg_data, task, progress)
    return selected(cfg_data, task, decision), decision.report
