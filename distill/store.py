"""The soft-label store: sharded TFRecords of teacher logits plus `manifest.json`.

The record schema is declared once (`feature_spec`) and used by the writer, the
reader and the tests. Shard k holds examples [k * shard_size, (k+1) *
shard_size) of the deterministically ordered transfer set, so a restarted or
parallel labeling run redoes only missing shards. Every file is written under a
temporary name and renamed when whole. See DESIGN.md, "the soft-label store".

    python -c "from distill import store; ds, m = store.read('RUN/store'); print(m)"
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from distill import mixing
from distill.errors import UserError
from distill.rundir import atomic_path, check_writable, output_errors, write_json_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def feature_spec(num_outputs: int, regression: bool, members: int = 0) -> dict:
    """The record schema: one place, for writer, reader and tests.

    Args:
      members: with a teacher ensemble stored member by member (`teacher.member_logits`),
        the number of members: "member_logits" holds their logits, member-major.
    """
    spec = {
        "id": tf.io.FixedLenFeature([], tf.string),
        "text_a": tf.io.FixedLenFeature([], tf.string),
        "text_b": tf.io.FixedLenFeature([], tf.string),
        "logits": tf.io.FixedLenFeature([num_outputs], tf.float32),
        "label": tf.io.FixedLenFeature([], tf.float32 if regression else tf.int64),
    }
    if members:
        spec["member_logits"] = tf.io.FixedLenFeature([members, num_outputs], tf.float32)
    return spec


def shard_name(index: int, count: int) -> str:
    return f"soft_labels-{index:05d}-of-{count:05d}.tfrecord"


def serialize(example: dict, regression: bool) -> bytes:
    """One record as bytes; `example` holds numpy/python values of the schema's fields."""
    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    label = (tf.train.Feature(float_list=tf.train.FloatList(value=[float(example["label"])]))
             if regression else
             tf.train.Feature(int64_list=tf.train.Int64List(value=[int(example["label"])])))
    features = {
        "id": b(example["id"]), "text_a": b(example["text_a"]), "text_b": b(example["text_b"]),
        "logits": tf.train.Feature(float_list=tf.train.FloatList(
            value=np.asarray(example["logits"], np.float32).reshape(-1))),
        "label": label,
    }
    if "member_logits" in example:
        features["member_logits"] = tf.train.Feature(float_list=tf.train.FloatList(
            value=np.asarray(example["member_logits"], np.float32).reshape(-1)))
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString(deterministic=True)  # Sorted keys: the same bytes in any process.


def teacher_name(manifest: dict) -> str:
    """The teacher that made a store, in words: its encoder, or its ensemble's members."""
    teacher = manifest["teacher"]
    if "imported" in teacher:  # `distill import-labels`: another teacher's outputs.
        return f"{teacher['name']} (imported from {teacher['imported']})"
    if "members" in teacher:
        return (f"ensemble of {len(teacher['members'])} ({teacher['combine']}): "
                + ", ".join(m["finetuned"] or f"{m['encoder']} (seed {m['seed']})"
                            for m in teacher["members"]))
    return teacher["encoder"]


def imported_teacher(store: str | None) -> dict | None:
    """The manifest's teacher of a store made by `distill import-labels`, else None: such a
    run has no teacher model to train, gate or evaluate."""
    if not store or not os.path.isfile(os.path.join(store, MANIFEST)):
        return None
    teacher = load_manifest(store).get("teacher", {})
    return teacher if "imported" in teacher else None


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(store: str) -> dict:
    path = os.path.join(store, MANIFEST)
    if not os.path.isfile(path):
        raise UserError(f"Soft-label store {store}: no {MANIFEST}; expected a directory written "
                        f"by `distill label`.")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e}); the store is corrupt.") from e


class Writer:
    """Writes a store shard by shard; `pending()` says which shards remain after a crash.

    `producer` is everything that identifies what made the labels (task, label
    names, teacher, preprocessor, source). A store on disk made by another
    producer is refused rather than overwritten.
    """

    def __init__(self, store: str, producer: dict, total_examples: int, shard_size: int,
                 num_outputs: int, regression: bool, bytes_per_record: int = 0):
        self.store, self.regression = store, regression
        num_shards = max(1, -(-total_examples // shard_size))
        self.manifest = {
            "format_version": FORMAT_VERSION, **producer,
            "num_outputs": num_outputs, "examples": total_examples, "shard_size": shard_size,
            "shards": [{"file": shard_name(k, num_shards),
                        "records": min(shard_size, total_examples - k * shard_size)}
                       for k in range(num_shards)],
            "complete": False,
        }
        check_writable(os.path.dirname(os.path.abspath(store)))
        existing = os.path.join(store, MANIFEST)
        self._corrupt = {}  # file -> the sha256 its bytes no longer match; never merged back.
        if os.path.isfile(existing):
            old = load_manifest(store)
            differs = [k for k in self.manifest if k not in ("shards", "complete")
                       and old.get(k) != self.manifest[k]]
            if differs:
                raise UserError(f"Soft-label store {store} was made by a different producer "
                                f"(field {differs[0]!r}: store has {old.get(differs[0])!r}, "
                                f"this run has {self.manifest[differs[0]]!r}); use another "
                                f"output directory.")
            # Keep the finished shards that are intact and go on from there; a missing
            # or corrupt one is written again.
            for new, done in zip(self.manifest["shards"], old["shards"]):
                path = os.path.join(store, done["file"])
                if "sha256" not in done:
                    continue
                if os.path.isfile(path) and sha256(path) == done["sha256"]:
                    new.update(done)
                else:
                    self._corrupt[done["file"]] = done["sha256"]
        remaining = sum(s["records"] for s in self.manifest["shards"] if "sha256" not in s)
        check_writable(store, need_bytes=remaining * bytes_per_record)  # Before writing anything.
        self._update_manifest()

    def _update_manifest(self) -> None:
        """Merges the shards other workers finished, then rewrites the manifest, under a lock."""
        path = os.path.join(self.store, MANIFEST)
        with open(os.path.join(self.store, ".manifest.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if os.path.isfile(path):
                on_disk = load_manifest(self.store)
                for mine, theirs in zip(self.manifest["shards"], on_disk.get("shards", [])):
                    if ("sha256" in theirs and "sha256" not in mine and theirs["file"] == mine["file"]
                            and self._corrupt.get(theirs["file"]) != theirs["sha256"]):
                        mine.update(theirs)
            # Everything here derives from the shards, so any worker layout that
            # finishes gives the same manifest, byte for byte.
            self.manifest["complete"] = all("sha256" in s for s in self.manifest["shards"])
            write_json_atomic(path, self.manifest)

    def pending(self, worker: int = 0, num_workers: int = 1) -> list[int]:
        """Indices of shards still to write; worker w owns shards k = w (mod W)."""
        return [k for k, s in enumerate(self.manifest["shards"])
                if "sha256" not in s and k % num_workers == worker]

    def slice(self, k: int) -> tuple[int, int]:
        """(first example, count) that shard k holds."""
        return k * self.manifest["shard_size"], self.manifest["shards"][k]["records"]

    def write_shard(self, k: int, examples) -> None:
        """Writes shard k from an iterable of example dicts, then records it in the manifest."""
        entry = self.manifest["shards"][k]
        path = os.path.join(self.store, entry["file"])
        n = 0
        # Only write errors are named as such (by the shard's name), not the teacher's.
        with atomic_path(path, clear_stale=True) as tmp:
            with output_errors(path):
                w = tf.io.TFRecordWriter(tmp)
            for ex in examples:
                record = serialize(ex, self.regression)
                with output_errors(path):
                    w.write(record)
                n += 1
            with output_errors(path):
                w.close()
            if n != entry["records"]:
                raise RuntimeError(f"shard {k}: wrote {n} records, expected {entry['records']}")
        entry["sha256"] = sha256(path)
        self._update_manifest()


def _tfrecord_damage(path: str) -> str:
    """Where TFRecord's own length and data CRCs first fail in `path`, in words."""
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            count += 1
    except tf.errors.DataLossError as e:
        return f"TFRecord CRC check fails after {count} intact records: {e.message.splitlines()[0]}"
    return f"all {count} records pass TFRecord's CRC checks, but the bytes changed"


def check(store: str, expect: dict | None = None, verify_checksums: bool = True) -> dict:
    """Returns the manifest of a complete, intact store made for what `expect` says.

    Args:
      store: the store directory.
      expect: manifest fields that must match, e.g. {"task": "sst2"}; a nested
        dict (the preprocessor) matches on the keys it gives.
      verify_checksums: recompute every shard's sha256.

    Raises:
      UserError: naming the first problem: incomplete, missing or corrupt shard,
        or a field that differs from `expect`.
    """
    manifest = load_manifest(store)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"Soft-label store {store}: format_version "
                        f"{manifest.get('format_version')!r}; expected {FORMAT_VERSION}.")
    for key, want in (expect or {}).items():
        have = manifest.get(key)
        if isinstance(want, dict) and isinstance(have, dict):
            bad = [k for k in want if want[k] is not None and have.get(k) != want[k]]
            if bad:
                raise UserError(f"Soft-label store {store} was made for {key}.{bad[0]} = "
                                f"{have.get(bad[0])!r}; expected {want[bad[0]]!r}.")
        elif have != want:
            raise UserError(f"Soft-label store {store} was made for {key} = {have!r}; "
                            f"expected {want!r}.")
    if not manifest.get("complete"):
        done = sum("sha256" in s for s in manifest["shards"])
        raise UserError(f"Soft-label store {store} is incomplete ({done} of "
                        f"{len(manifest['shards'])} shards written); run `distill label` "
                        f"again to finish it.")
    for s in manifest["shards"]:
        path = os.path.join(store, s["file"])
        if not os.path.isfile(path):
            raise UserError(f"Soft-label store {store}: shard {s['file']} is missing.")
        if verify_checksums and sha256(path) != s["sha256"]:
            raise UserError(f"Soft-label store {store}: shard {s['file']} does not match its "
                            f"sha256 in {MANIFEST}; the file is corrupt ({_tfrecord_damage(path)}). "
                            f"Run `distill label` with the same config again to rewrite it.")
    return manifest


def wait_complete(store: str, timeout: float = 6 * 3600, poll: float = 2.0) -> dict:
    """Waits for other workers to finish a store; returns its manifest once complete."""
    deadline = time.time() + timeout
    while True:
        try:
            return check(store, verify_checksums=False)
        except UserError:
            if time.time() > deadline:
                raise UserError(f"Soft-label store {store}: still incomplete after {timeout:.0f}s "
                                f"of waiting for the other workers.") from None
            time.sleep(poll)


def read(store: str, expect: dict | None = None, verify_checksums: bool = True,
         parallel_reads: int = 4) -> tuple[tf.data.Dataset, dict]:
    """Opens a store as a `tf.data.Dataset` of parsed records, after `check`.

    Shards are interleaved `parallel_reads` at a time; order is deterministic (training
    reads `read_mixed` instead).
    """
    manifest = check(store, expect, verify_checksums)
    files = [os.path.join(store, s["file"]) for s in manifest["shards"]]
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(parallel_reads, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _parse(ds, manifest), manifest


def _parse(records: tf.data.Dataset, manifest: dict) -> tf.data.Dataset:
    spec = feature_spec(manifest["num_outputs"], manifest["task_type"] == "regression",
                        manifest.get("member_logits", 0))
    # Parsing 256 records at a time is several times faster than one by one.
    parsed = records.batch(256).map(lambda r: tf.io.parse_example(r, spec),
                                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return parsed.unbatch()


def subsample_mask(total: int, size: int, seed: int) -> np.ndarray:
    """Which `size` of a store's `total` records a subsample keeps, drawn with `seed`: the
    paper's transfer-set-size experiment, a smaller transfer set without labeling again."""
    keep = np.zeros(total, bool)
    keep[np.random.default_rng(seed).choice(total, size, replace=False)] = True
    return keep


def read_mixed(store: str, manifest: dict, seed: int, keep: np.ndarray | None = None
               ) -> tf.data.Dataset:
    """The store's records (those `keep` flags, by store position), in a uniform mix drawn
    with `seed` (`distill/mixing.py`): what each training epoch reads. `manifest` is the
    store's, checked before."""
    files = [os.path.join(store, s["file"]) for s in manifest["shards"]]
    counts = [s["records"] for s in manifest["shards"]]

    def open_shard(path):  # Small buffers: one reader is open per segment.
        return tf.data.TFRecordDataset(path, buffer_size=64 * 1024)

    records = mixing.mixed(files, counts, open_shard, seed)
    if keep is not None:
        mask = tf.constant(keep)
        records = records.filter(lambda i, _: mask[i])
    return _parse(records.map(lambda _, record: record), manifest)
