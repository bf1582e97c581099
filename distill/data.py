"""Readers: TFDS, GLUE TSV directories and plain transfer text -> `tf.data`.

Every source yields `{id, text_a, text_b, label}` in a fixed order (labeling
relies on it): `id` is unique and stable ("sst2/train/17", "agnews.txt/3"),
`text_b` is "" for single-sentence tasks, `label` is the class index (-1 where
unknown) or, for regression, a float (NaN where unknown). `get(spec, task,
split)` dispatches on the spec's prefix:

    tfds[:DATA_DIR]   the TFDS `glue/<task>` dataset (the default for real runs)
    glue_dir:PATH     a task directory of the original GLUE download (PATH/train.tsv, ...)
    text:PATH         transfer text, one example per line (`a<TAB>b` for pair tasks)

Files are checked row by row before any work starts; a bad row is a `UserError`
naming the file and line.
"""
from __future__ import annotations

import dataclasses
import math
import os

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from distill import tasks as tasks_lib
from distill.errors import UserError

PREFIXES = ("tfds", "glue_dir", "text")


def missing_label(task: tasks_lib.Task):
    return math.nan if task.is_regression else -1


def label_dtype(task: tasks_lib.Task):
    return tf.float32 if task.is_regression else tf.int64


@dataclasses.dataclass
class Source:
    """An ordered, finite set of examples: `get_tfdata()` and `total_examples`."""

    spec: str
    split: str
    total_examples: int
    _make: object  # () -> tf.data.Dataset

    def get_tfdata(self) -> tf.data.Dataset:
        return self._make()


def get(spec: str, task: tasks_lib.Task, split: str = "train", limit: int | None = None) -> Source:
    """Returns the source that `spec` names (see the module docstring).

    Args:
      spec: "tfds", "tfds:DATA_DIR", "glue_dir:PATH" or "text:PATH".
      task: the GLUE task; fixes fields, label set and file layout.
      split: the split to read (ignored for `text:`).
      limit: keep only the first `limit` examples (quick runs).

    Raises:
      UserError: unknown prefix, missing file, or a malformed row.
    """
    kind, _, arg = spec.partition(":")
    if kind == "tfds":
        source = _tfds(task, split, arg or None)
    elif kind == "glue_dir":
        source = _glue_tsv(arg, task, split)
    elif kind == "text":
        source = _text_lines(arg, task)
    else:
        raise UserError(f"Data spec {spec!r}: unknown prefix {kind!r}; expected one of "
                        f"{', '.join(p + ':' for p in PREFIXES)}.")
    source.spec = spec
    return limited(source, limit)


def labels(source: Source, task: tasks_lib.Task) -> np.ndarray:
    """The gold labels of `source` in order (int64 class indices, or float scores)."""
    values = source.get_tfdata().map(lambda ex: ex["label"]).batch(4096).as_numpy_iterator()
    out = np.concatenate(list(values) or [np.zeros(0)])
    return out.astype(np.float64 if task.is_regression else np.int64)


def limited(source: Source, limit: int | None) -> Source:
    """The first `limit` examples of `source` (all of them when None)."""
    if limit is None or limit >= source.total_examples:
        return source
    make = source._make
    return dataclasses.replace(source, total_examples=limit, _make=lambda: make().take(limit))


def concatenate(sources: list[Source]) -> Source:
    """One source that reads `sources` one after the other (the transfer set)."""
    if not sources:
        raise UserError("The transfer set is empty; expected at least one entry in data.transfer.")

    def make():
        ds = sources[0].get_tfdata()
        for s in sources[1:]:
            ds = ds.concatenate(s.get_tfdata())
        return ds

    return Source("+".join(s.spec for s in sources), "+".join(s.split for s in sources),
                  sum(s.total_examples for s in sources), make)


def _from_rows(rows: dict[str, list], task: tasks_lib.Task) -> callable:
    arrays = {k: np.asarray(v, dtype=object) for k, v in rows.items() if k != "label"}
    arrays["label"] = np.asarray(rows["label"], dtype=np.float32 if task.is_regression else np.int64)
    return lambda: tf.data.Dataset.from_tensor_slices(arrays)


def _decoded_lines(path: str):
    """Yields (line number, text) of a UTF-8 file, tolerating `\\r\\n` endings."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{number}: invalid UTF-8 at byte {e.start}; "
                                f"expected UTF-8 text.") from e
            yield number, line.rstrip("\n").rstrip("\r")


def _parse_label(value: str, task: tasks_lib.Task, where: str):
    if task.is_regression:
        try:
            return float(value)
        except ValueError:
            raise UserError(f"{where}: label {value!r} is not a number; expected a float score "
                            f"for {task.name}.") from None
    digits = value.isascii() and value.isdigit()  # Not '٠', which Python also calls a digit.
    if task.numeric_tsv_labels and digits and int(value) < task.num_outputs:
        return int(value)
    if value in task.label_names:
        return task.label_names.index(value)
    allowed = (list(map(str, range(task.num_outputs))) if task.numeric_tsv_labels
               else list(task.label_names))
    raise UserError(f"{where}: label {value!r} is outside the label set of {task.name}; "
                    f"expected one of {allowed}.")


def _glue_tsv(directory: str, task: tasks_lib.Task, split_name: str) -> Source:
    split = task.split(split_name)
    path = os.path.join(directory, split.tsv)
    if not os.path.isfile(path):
        raise UserError(f"GLUE file {path} does not exist; expected the {task.glue_name} "
                        f"directory of the GLUE download with {split.tsv}.")
    cols = split.columns
    wanted = {"text_a": cols.text_a, "text_b": cols.text_b, "label": cols.label if split.labeled else None,
              "id": cols.id}
    rows = {"id": [], "text_a": [], "text_b": [], "label": []}
    index = None
    for number, line in _decoded_lines(path):
        fields = line.split("\t")
        if index is None:
            if split.has_header:
                missing = [c for c in wanted.values() if isinstance(c, str) and c not in fields]
                if missing:
                    raise UserError(f"{path}:1: header lacks column(s) {missing}; received "
                                    f"header {fields}.")
                index = {k: fields.index(c) if isinstance(c, str) else c for k, c in wanted.items()}
                continue
            index = dict(wanted)
        where = f"{path}:{number}"
        if line == "" and number > 1:
            continue  # A blank line (usually the last) holds no example.
        need = max(i for i in index.values() if i is not None) + 1
        if len(fields) < need:
            raise UserError(f"{where}: row has {len(fields)} tab-separated fields; expected at "
                            f"least {need} for {task.glue_name}/{split.tsv}.")
        text_a = fields[index["text_a"]]
        text_b = fields[index["text_b"]] if index["text_b"] is not None else ""
        for field, value in (("text_a", text_a), ("text_b", text_b)):
            if (field == "text_a" or index["text_b"] is not None) and not value.strip():
                raise UserError(f"{where}: {field} is empty; expected non-empty text.")
        row_id = fields[index["id"]] if index["id"] is not None else str(len(rows["id"]))
        rows["id"].append(f"{task.name}/{split.name}/{row_id}")
        rows["text_a"].append(text_a)
        rows["text_b"].append(text_b)
        rows["label"].append(_parse_label(fields[index["label"]], task, where)
                             if index["label"] is not None else missing_label(task))
    if not rows["id"]:
        raise UserError(f"{path} holds no examples; expected at least one row.")
    return Source(f"glue_dir:{directory}", split.name, len(rows["id"]), _from_rows(rows, task))


def plain_lines(paths: list[str]) -> list[int]:
    """Unlabeled text for MLM: every line of `paths` checked; returns each file's line count.

    Read them with `lines`.
    """
    if not paths:
        raise UserError("No text files given; expected at least one file with one text per line.")
    count, counts = 0, []
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"Text file {path} does not exist.")
        for number, line in _decoded_lines(path):
            if not line.strip():
                raise UserError(f"{path}:{number}: empty line; expected one text per line.")
            count += 1
        counts.append(count - sum(counts))
    return counts


def drop_cr(line: tf.Tensor) -> tf.Tensor:
    """A line read by `tf.data.TextLineDataset` without the `\r` of a `\r\n` ending."""
    return tf.strings.regex_replace(line, "\r$", "")


def _text_lines(path: str, task: tasks_lib.Task) -> Source:
    """Unlabeled transfer text: checked in one streaming pass, then read by TextLineDataset."""
    if not os.path.isfile(path):
        raise UserError(f"Transfer text file {path} does not exist.")
    count = 0
    for number, line in _decoded_lines(path):
        parts = line.split("\t")
        if not line.strip():
            raise UserError(f"{path}:{number}: empty line; expected one text per line.")
        if task.is_pair and len(parts) != 2:
            raise UserError(f"{path}:{number}: {task.name} is a sentence-pair task; expected "
                            f"'text_a<TAB>text_b', received {len(parts)} field(s).")
        if not task.is_pair and len(parts) != 1:
            raise UserError(f"{path}:{number}: expected one text without tabs for "
                            f"{task.name}; received {len(parts)} tab-separated fields.")
        count += 1
    if count == 0:
        raise UserError(f"Transfer text file {path} is empty; expected one text per line.")
    name = os.path.basename(path)

    def parse(number, line):
        line = tf.strings.regex_replace(line, "\r$", "")
        parts = tf.strings.split(line, "\t")
        text_b = parts[1] if task.is_pair else tf.constant("")
        return {"id": tf.strings.join([name, tf.strings.as_string(number)], "/"),
                "text_a": parts[0], "text_b": text_b,
                "label": tf.constant(missing_label(task), label_dtype(task))}

    # Line numbers start at 1 so ids match what an editor shows.
    return Source(f"text:{path}", "unlabeled", count,
                  lambda: tf.data.TextLineDataset(path).enumerate(start=1).map(parse))


def _tfds(task: tasks_lib.Task, split_name: str, data_dir: str | None) -> Source:
    """The task's own `glue/<task>` TFDS dataset, with its gold labels."""
    split = task.split(split_name)
    name, tfds_split = split.tfds.split(":") if split.tfds else (task.tfds_name, split.name)
    return tfds_source(name, tfds_split, task.tfds_fields, task, data_dir, with_labels=True,
                       id_prefix=f"{task.name}/{split.name}")


def tfds_source(name: str, split: str, fields: tuple[str, ...], task: tasks_lib.Task,
                data_dir: str | None = None, with_labels: bool = False,
                id_prefix: str | None = None) -> Source:
    """Any TFDS dataset's text `fields` as `{id, text_a, text_b, label}`, in file order.

    TFDS's own builder downloads and prepares the data (`download_and_prepare`),
    so a dataset is read exactly as `tfds.load` reads it. Without `with_labels`
    the label is the missing one (transfer text); ids are "<name>/<split>/<row>"
    (or `id_prefix/<idx>` where the dataset numbers its rows, as GLUE does).

    Raises:
      UserError: the dataset cannot be built or downloaded, the split or a field
        does not exist, or the number of fields does not fit the task.
    """
    import tensorflow_datasets as tfds

    where = f"TFDS dataset {name} split {split}"
    if len(fields) != (2 if task.is_pair else 1):
        raise UserError(f"{where}: {task.name} is a {'sentence-pair' if task.is_pair else 'single-sentence'} "
                        f"task; expected {2 if task.is_pair else 1} text field(s), received "
                        f"{list(fields)}.")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        missing = [f for f in fields if f not in builder.info.features]
        if missing:
            raise UserError(f"{where}: no feature(s) {missing}; expected some of "
                            f"{sorted(builder.info.features)}.")
        builder.download_and_prepare()
    except UserError:
        raise
    except Exception as e:  # TFDS raises many types for "not available".
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{where} could not be loaded (data_dir={data_dir}): {reason}") from e
    known = builder.info.splits  # Empty under tfds.testing.mock_data.
    if known and split not in known:
        raise UserError(f"{where}: no such split; expected one of {sorted(known)}.")
    numbered = "idx" in builder.info.features

    def convert(row, ex):
        if with_labels:
            label = tf.cast(ex["label"], label_dtype(task))  # TFDS marks unlabeled rows -1, as we do.
        else:
            label = tf.constant(missing_label(task), label_dtype(task))
        number = ex["idx"] if numbered else row
        return {"id": tf.strings.join([id_prefix or f"{name}/{split}",
                                       tf.strings.as_string(number)], "/"),
                "text_a": ex[fields[0]],
                "text_b": ex[fields[1]] if len(fields) == 2 else tf.constant(""),
                "label": label}

    def make():
        ds = builder.as_dataset(split=split, shuffle_files=False,
                                read_config=tfds.ReadConfig(interleave_cycle_length=1))
        return ds.enumerate().map(convert)

    total = known[split].num_examples if split in known else 0
    if not total:  # No split metadata (e.g. under tfds.testing.mock_data): count.
        total = int(make().reduce(0, lambda n, _: n + 1))
    return Source(f"tfds:{name}", split, total, make)


def heldout_split(source: Source, fraction: float, seed: int) -> tuple[Source, Source]:
    """Carves a fixed, seeded heldout split out of a training source.

    Returns (train, heldout). The choice depends only on the seed and the
    example count, so every trial of a sweep sees the same split.
    """
    n = source.total_examples
    n_heldout = max(1, int(round(n * fraction)))
    order = np.random.default_rng(seed).permutation(n)
    is_heldout = np.zeros(n, dtype=bool)
    is_heldout[order[:n_heldout]] = True
    mask = tf.constant(is_heldout)

    def pick(keep_heldout):
        def make():
            ds = source.get_tfdata().enumerate()
            ds = ds.filter(lambda i, ex: tf.equal(tf.gather(mask, i), keep_heldout))
            return ds.map(lambda i, ex: ex)
        return make

    train = Source(source.spec, source.split + "-train", n - n_heldout, pick(False))
    heldout = Source(source.spec, source.split + "-heldout", n_heldout, pick(True))
    return train, heldout


HELDOUT = "heldout"  # The split carved out of train (data.heldout_fraction); never the dev set.


def labeled_inputs(cfg_data) -> dict:
    """What identifies D_L as the stages read it: the fingerprint every stage records."""
    return {"labeled": cfg_data.labeled, "max_train_examples": cfg_data.max_train_examples,
            "heldout_fraction": cfg_data.heldout_fraction, "heldout_seed": cfg_data.heldout_seed}


def labeled(cfg_data, task: tasks_lib.Task, split: str, limit: int | None = None) -> Source:
    """D_L's `split` as the config's `data` section names it.

    With `data.heldout_fraction` > 0, "train" is the train split without the
    carved-out examples and "heldout" is those examples. `limit` defaults to the
    config's cap for the split.
    """
    if split in ("train", HELDOUT) and cfg_data.heldout_fraction > 0:
        full = get(cfg_data.labeled, task, "train")
        train, heldout = heldout_split(full, cfg_data.heldout_fraction, cfg_data.heldout_seed)
        source = train if split == "train" else heldout
    elif split == HELDOUT:
        raise UserError("data.heldout_fraction is 0, so there is no heldout split; set it "
                        "to carve one out of train (e.g. 0.1).")
    else:
        source = get(cfg_data.labeled, task, split)
    if limit is None:
        limit = cfg_data.max_train_examples if split == "train" else cfg_data.max_eval_examples
    return limited(source, limit)
