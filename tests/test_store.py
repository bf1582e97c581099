"""The soft-label store: round trip with plain tf.data, resume, and every refusal."""
import json
import os
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from distill import store as store_lib
from distill.errors import UserError
from teachers import label

PRODUCER = {"task": "sst2", "task_type": "classification", "label_names": ["negative", "positive"],
            "teacher": {"encoder": "t", "fingerprint": "abc"},
            "preprocessor": {"handle": "p", "vocab_sha256": "v1", "lower_case": True,
                             "seq_length": 128},
            "source": {"transfer": ["text:x"]}}


def examples(start, count):
    for i in range(start, start + count):
        yield {"id": f"x/{i}".encode(), "text_a": f"text {i}".encode(), "text_b": b"",
               "label": -1 if i % 2 else i % 3 % 2, "logits": np.array([i, -i], np.float32) / 10}


def write_store(path, total=10, shard_size=4, producer=PRODUCER, only=None):
    writer = store_lib.Writer(str(path), producer, total, shard_size, 2, regression=False)
    for k in writer.pending():
        if only is None or k in only:
            writer.write_shard(k, examples(*writer.slice(k)))
    return writer


def test_round_trip_with_plain_tf_data(tmp_path):
    write_store(tmp_path / "store")
    files = sorted(tf.io.gfile.glob(str(tmp_path / "store" / "soft_labels-*.tfrecord")))
    assert [os.path.basename(f) for f in files] == [
        "soft_labels-00000-of-00003.tfrecord", "soft_labels-00001-of-00003.tfrecord",
        "soft_labels-00002-of-00003.tfrecord"]
    spec = store_lib.feature_spec(2, regression=False)
    parsed = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(files)]
    assert [p["id"].numpy() for p in parsed] == [f"x/{i}".encode() for i in range(10)]
    np.testing.assert_allclose(parsed[7]["logits"], [0.7, -0.7])
    assert parsed[7]["label"].numpy() == -1


def test_read_checks_and_returns_the_manifest(tmp_path):
    write_store(tmp_path / "store")
    ds, manifest = store_lib.read(str(tmp_path / "store"), expect={"task": "sst2"})
    assert manifest["complete"] and manifest["examples"] == 10
    assert [s["records"] for s in manifest["shards"]] == [4, 4, 2]
    assert len(list(ds)) == 10


def test_incomplete_store_is_refused_and_resume_writes_only_missing(tmp_path):
    writer = write_store(tmp_path / "store", only={0, 2})
    with pytest.raises(UserError, match=r"incomplete \(2 of 3 shards written\)"):
        store_lib.check(str(tmp_path / "store"))
    first = open(tmp_path / "store" / "soft_labels-00000-of-00003.tfrecord", "rb").read()
    resumed = store_lib.Writer(str(tmp_path / "store"), PRODUCER, 10, 4, 2, regression=False)
    assert resumed.pending() == [1]
    resumed.write_shard(1, examples(*resumed.slice(1)))
    assert store_lib.check(str(tmp_path / "store"))["complete"]
    assert open(tmp_path / "store" / "soft_labels-00000-of-00003.tfrecord", "rb").read() == first
    assert writer.pending(worker=1, num_workers=2) == [1]


def test_store_made_for_another_task_or_vocab_is_refused(tmp_path):
    write_store(tmp_path / "store")
    with pytest.raises(UserError, match=r"made for task = 'sst2'; expected 'cola'"):
        store_lib.check(str(tmp_path / "store"), expect={"task": "cola"})
    with pytest.raises(UserError, match=r"preprocessor.vocab_sha256 = 'v1'; expected 'v2'"):
        store_lib.check(str(tmp_path / "store"), expect={"preprocessor": {"vocab_sha256": "v2"}})


def test_corrupt_or_missing_shard_is_refused(tmp_path):
    write_store(tmp_path / "store")
    shard = tmp_path / "store" / "soft_labels-00001-of-00003.tfrecord"
    data = bytearray(shard.read_bytes())
    data[20] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"soft_labels-00001-of-00003.tfrecord does not match"):
        store_lib.check(str(tmp_path / "store"))
    shard.unlink()
    with pytest.raises(UserError, match=r"soft_labels-00001-of-00003.tfrecord is missing"):
        store_lib.check(str(tmp_path / "store"))


def test_no_manifest_or_bad_json(tmp_path):
    with pytest.raises(UserError, match=r"no manifest.json"):
        store_lib.check(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(UserError, match=r"not valid JSON"):
        store_lib.check(str(tmp_path))


def test_writer_refuses_to_overwrite_another_producers_store(tmp_path):
    write_store(tmp_path / "store")
    before = (tmp_path / "store" / "manifest.json").read_text()
    other = dict(PRODUCER, teacher={"encoder": "t2", "fingerprint": "zzz"})
    with pytest.raises(UserError, match=r"different producer \(field 'teacher'"):
        store_lib.Writer(str(tmp_path / "store"), other, 10, 4, 2, regression=False)
    assert (tmp_path / "store" / "manifest.json").read_text() == before


def test_manifest_records_checksums(tmp_path):
    write_store(tmp_path / "store")
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    for shard in manifest["shards"]:
        assert shard["sha256"] == store_lib.sha256(str(tmp_path / "store" / shard["file"]))


def test_two_workers_make_the_same_store_as_one(tmp_path):
    write_store(tmp_path / "single", total=10, shard_size=3)
    workers = [store_lib.Writer(str(tmp_path / "multi"), PRODUCER, 10, 3, 2, regression=False)
               for _ in range(2)]
    assert workers[0].pending(0, 2) == [0, 2] and workers[1].pending(1, 2) == [1, 3]
    for k in (0, 1, 2, 3):  # interleaved, as two processes would finish them
        w = workers[k % 2]
        w.write_shard(k, examples(*w.slice(k)))
    assert store_lib.check(str(tmp_path / "multi"))["complete"]
    for name in ["manifest.json"] + [f"soft_labels-0000{k}-of-00004.tfrecord" for k in range(4)]:
        assert (tmp_path / "multi" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()


def _texts(n, seed=0):
    words = ["the", "good", "movie", "bad", "plot", "a"]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=rng.integers(1, 40))) for _ in range(n)]


def _label_all(fn, texts, packer, batch_size, window, in_flight=1, seconds=None):
    """What labeling does: length-sorted windows, batched, reassembled in input order."""
    ds = tf.data.Dataset.from_tensor_slices({
        "id": [f"x/{i}" for i in range(len(texts))], "text_a": texts, "text_b": [""] * len(texts),
        "label": [-1] * len(texts)})
    slices = [(0, len(texts))]
    batches = label.sorted_batches(label.shard_windows(ds, slices, window), packer, batch_size)
    out = list(label.labeled_windows(batches, label.window_sizes(slices, window), [fn],
                                     [0.0] if seconds is None else seconds, in_flight))
    ids = np.concatenate([fields["id"] for fields, _ in out])
    return ids, np.concatenate([o[0] for _, o in out])


def test_sorted_labeling_restores_order_and_pads_per_batch(vocab_file):
    from distill import text

    texts = _texts(50)
    packer = text.Packer(text.load(vocab_file), 64)
    seen_widths = []

    def fn(batch):  # Depends on each example's own tokens only, like a real encoder.
        seen_widths.append(batch["input_mask"].shape[1])
        ids = tf.cast(batch["input_word_ids"], tf.float32) * tf.cast(batch["input_mask"], tf.float32)
        return tf.stack([tf.reduce_sum(ids, 1), tf.reduce_sum(tf.cast(batch["input_mask"], tf.float32), 1)], 1)

    ids, got = _label_all(fn, texts, packer, batch_size=8, window=24)
    assert [i.decode() for i in ids] == [f"x/{i}" for i in range(50)]  # Input order kept.
    whole = packer({"text_a": tf.constant(texts), "text_b": tf.constant([""] * 50)})
    mask = whole["input_mask"].numpy()
    lengths = set(mask.sum(1).tolist())  # On a CPU each batch pads to its own longest.
    np.testing.assert_allclose(got, np.stack([(whole["input_word_ids"].numpy() * mask).sum(1),
                                              mask.sum(1)], 1))
    assert all(w in lengths for w in seen_widths) and min(seen_widths) < max(seen_widths)


def test_labeling_batch_size_does_not_change_the_soft_labels(tiny_encoder, vocab_file):
    """The CPU default batch (32) and the accelerator one (256) label alike: padding to another
    width is masked out, so only float rounding may differ."""
    from distill import models, text

    model = models.build(tiny_encoder, 2, dropout=0.1)
    packer = text.Packer(text.load(vocab_file), 64)
    texts = _texts(300, seed=1)

    def fn(batch):
        return model(batch, training=False)

    _, small = _label_all(fn, texts, packer, label.CPU_BATCH, label.CPU_BATCH * 16)
    _, large = _label_all(fn, texts, packer, label.ACCELERATOR_BATCH, label.ACCELERATOR_BATCH * 16)
    # A random head's logits are about 1e-3: the tolerance is a thousandth of them.
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-7)
    assert np.abs(small).max() > 1e-4 and np.std(small) > 1e-5  # Not trivially zero.


def test_two_batches_in_flight_label_exactly_as_one_at_a_time(tiny_encoder, vocab_file):
    from distill import models, text

    model = models.build(tiny_encoder, 2, dropout=0.1)
    packer = text.Packer(text.load(vocab_file), 64)
    texts = _texts(200, seed=2)

    def fn(batch):
        return model(batch, training=False)

    ids_one, one = _label_all(fn, texts, packer, 8, 64)
    ids_two, two = _label_all(fn, texts, packer, 8, 64, in_flight=2)
    assert ids_two.tolist() == ids_one.tolist()
    np.testing.assert_array_equal(two, one)  # The same bits, in the same order.


def test_batches_in_flight_overlap_and_are_timed_once(vocab_file):
    from distill import text

    packer = text.Packer(text.load(vocab_file), 64)
    lock, running, most = threading.Lock(), [0], [0]

    def fn(batch):  # Sleeping releases the GIL, as TensorFlow's kernels do.
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return tf.zeros([tf.shape(batch["input_mask"])[0], 2])

    seconds = [0.0]
    _label_all(fn, _texts(64), packer, 8, 32, in_flight=2, seconds=seconds)  # 8 batches.
    assert most[0] == 2
    # Overlapping calls count once: about 4 x 0.1 s of wall time, not the 0.8 s they add up to.
    assert 0.35 < seconds[0] < 0.65, seconds


def test_default_in_flight_is_two_on_a_cpu():
    assert label.default_in_flight() == label.CPU_IN_FLIGHT == 2


def test_shard_windows_read_the_source_once_and_restart_at_each_shard():
    ds = tf.data.Dataset.range(40).map(lambda i: {"id": i})
    windows = [w["id"].numpy().tolist() for w in label.shard_windows(ds, [(0, 10), (25, 7)], 4)]
    assert windows == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [25, 26, 27, 28], [29, 30, 31]]


def _three_sources(path, per_source=30_000):
    """A store written source by source, as `data.transfer` orders it: 3 x 30,000 records,
    each source three times the shuffle buffer."""
    writer = store_lib.Writer(str(path), PRODUCER, 3 * per_source, 10_000, 2, regression=False)

    def examples(start, count):
        for i in range(start, start + count):
            yield {"id": f"src{i // per_source}/{i}".encode(), "text_a": b"x" * (1 + i % 50),
                   "text_b": b"", "label": -1, "logits": np.zeros(2, np.float32)}

    for k in writer.pending():
        writer.write_shard(k, examples(*writer.slice(k)))
    return store_lib.check(str(path))


def _epoch(path, manifest, seed, packer, skip=0):
    """The distill stage's epoch order (mixed store read, shuffle, sorted windows), as ids."""
    from distill import training

    batches = training.batches(store_lib.read_mixed(str(path), manifest, seed), packer, 32,
                               shuffle_seed=seed, sort_window=16).skip(skip)
    return [b["id"].numpy() for b in batches]


def test_every_tenth_of_an_epoch_mixes_the_sources_as_the_whole_store_does(tmp_path, vocab_file):
    from distill import text

    manifest = _three_sources(tmp_path / "store")
    packer = text.Packer(text.load(vocab_file), 16)
    batches = _epoch(tmp_path / "store", manifest, 7, packer)
    ids = np.concatenate(batches)
    assert len(ids) == 90_000 and len(set(ids)) == 90_000  # Every record once.
    sources = np.array([int(i[3:4]) for i in ids])
    for tenth in np.array_split(sources, 10):
        shares = np.bincount(tenth, minlength=3) / len(tenth)
        assert np.all(np.abs(shares - 1 / 3) < 0.03), shares
    other = np.concatenate(_epoch(tmp_path / "store", manifest, 8, packer))
    assert (other != ids).mean() > 0.9  # Another epoch, another order.
    resumed = _epoch(tmp_path / "store", manifest, 7, packer, skip=1000)  # Killed after 1,000 batches.
    assert len(resumed) == len(batches) - 1000
    assert all((a == b).all() for a, b in zip(resumed, batches[1000:]))


def test_a_subsample_keeps_the_same_records_in_any_epoch(tmp_path):
    write_store(tmp_path / "store", total=10, shard_size=4)
    manifest = store_lib.check(str(tmp_path / "store"))
    keep = store_lib.subsample_mask(10, 4, seed=0)
    picked = [sorted(ex["id"] for ex in store_lib.read_mixed(str(tmp_path / "store"), manifest,
                                                              seed, keep).as_numpy_iterator())
              for seed in (0, 1)]
    assert picked[0] == picked[1] == sorted(f"x/{i}".encode() for i in np.flatnonzero(keep))
