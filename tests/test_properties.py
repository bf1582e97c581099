"""Property-based tests (hypothesis) for the readers and the soft-label record codec."""
import math
import pathlib
import tempfile

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings, strategies as st

from distill import data, store as store_lib, tasks
from distill.errors import UserError

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# Any text a line can hold: every Unicode character but line and field breaks and surrogates.
LINE_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\t\n\r"),
                    min_size=1, max_size=40).filter(lambda s: s.strip())
FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(example=st.fixed_dictionaries({
    "id": st.binary(max_size=30), "text_a": st.binary(max_size=200), "text_b": st.binary(max_size=50),
    "logits": st.lists(FLOAT32, min_size=3, max_size=3), "label": st.integers(-1, 2)}))
def test_classification_records_round_trip(example):
    spec = store_lib.feature_spec(3, regression=False)
    parsed = tf.io.parse_single_example(store_lib.serialize(example, regression=False), spec)
    for key in ("id", "text_a", "text_b"):
        assert parsed[key].numpy() == example[key]
    np.testing.assert_array_equal(parsed["logits"].numpy(), np.asarray(example["logits"], np.float32))
    assert int(parsed["label"]) == example["label"]


@SETTINGS
@given(score=FLOAT32, label=st.one_of(FLOAT32, st.just(math.nan)))
def test_regression_records_round_trip_nan_labels_included(score, label):
    example = {"id": b"x", "text_a": b"a", "text_b": b"b", "logits": [score], "label": label}
    parsed = tf.io.parse_single_example(store_lib.serialize(example, regression=True),
                                        store_lib.feature_spec(1, regression=True))
    assert float(parsed["logits"][0]) == np.float32(score)
    got = float(parsed["label"])
    assert (math.isnan(got) and math.isnan(label)) or got == np.float32(label)


@SETTINGS
@given(example=st.fixed_dictionaries({
    "id": st.binary(max_size=10), "text_a": st.binary(max_size=10), "text_b": st.just(b""),
    "logits": st.lists(FLOAT32, min_size=2, max_size=2), "label": st.integers(0, 1)}))
def test_serialization_is_canonical(example):
    # Byte-identical stores across processes rest on this: protobuf writes a map in whatever
    # order its hash table holds, which differs between processes, unless told to sort.
    data = store_lib.serialize(example, False)
    assert _feature_keys(data) == ["id", "label", "logits", "text_a", "text_b"]
    assert tf.train.Example.FromString(data).SerializeToString(deterministic=True) == data


def _fields(data: bytes):
    """(field number, bytes) of each length-delimited field of a protobuf message."""
    i = 0
    while i < len(data):
        tag, i = _varint(data, i)
        assert tag & 7 == 2, "every field on this path is length-delimited"
        size, i = _varint(data, i)
        yield tag >> 3, data[i:i + size]
        i += size


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        value, shift, i = value | (byte & 0x7F) << shift, shift + 7, i + 1
        if byte < 0x80:
            return value, i


def _feature_keys(example: bytes) -> list[str]:
    """The feature names in the order the bytes hold them (Example.features.feature map)."""
    (_, features), = _fields(example)
    return [dict(_fields(entry))[1].decode() for _, entry in _fields(features)]


def read_all(source):
    return list(source.get_tfdata().as_numpy_iterator())


@SETTINGS
@given(rows=st.lists(st.tuples(LINE_TEXT, st.integers(0, 1)), min_size=1, max_size=20))
def test_glue_tsv_reader_returns_every_row_as_written(rows):
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["sentence\tlabel", *(f"{text}\t{label}" for text, label in rows)]
        pathlib.Path(tmp, "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        got = read_all(data.get(f"glue_dir:{tmp}", tasks.get("sst2"), "train"))
    assert [(g["text_a"].decode("utf-8"), int(g["label"])) for g in got] == rows
    assert len({g["id"] for g in got}) == len(rows)


@SETTINGS
@given(texts=st.lists(LINE_TEXT, min_size=1, max_size=20), crlf=st.booleans())
def test_transfer_text_reader_returns_every_line_as_written(texts, crlf):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp, "texts.txt")
        path.write_bytes("".join(t + ("\r\n" if crlf else "\n") for t in texts).encode("utf-8"))
        source = data.get(f"text:{path}", tasks.get("sst2"))
        got = read_all(source)
    assert source.total_examples == len(texts)
    assert [g["text_a"].decode("utf-8") for g in got] == texts
    assert [g["id"] for g in got] == [f"texts.txt/{i}".encode() for i in range(1, len(texts) + 1)]


@SETTINGS
@example(good=[], bad="\u0660")  # ARABIC-INDIC DIGIT ZERO: str.isdigit() says yes.
@given(good=st.lists(st.integers(0, 1), min_size=0, max_size=5),
       bad=st.text(min_size=1, max_size=5).filter(lambda s: s.strip() not in ("0", "1")
                                                   and "\t" not in s and "\n" not in s
                                                   and "\r" not in s and s.strip() == s))
def test_glue_tsv_reader_names_the_line_of_a_bad_label(good, bad):
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["sentence\tlabel", *(f"fine\t{y}" for y in good), f"fine\t{bad}"]
        pathlib.Path(tmp, "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            data.get(f"glue_dir:{tmp}", tasks.get("sst2"), "train")
        except UserError as e:
            assert f"train.tsv:{len(good) + 2}: label {bad!r} is outside the label set" in str(e)
        else:
            raise AssertionError(f"label {bad!r} was accepted")
