"""Continued MLM through `.mlm`: masking statistics, learning, held-out loss, export format."""
import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from conftest import needs_shared, write
from distill import encoders, text, training
from distill.config import MLMConfig
from students import mlm

SPECIAL = list(text.SPECIAL_TOKENS)


def test_masking_statistics_match_bert(tmp_path):
    words = [f"w{i}" for i in range(40)]
    vocab = write(tmp_path / "vocab.txt", SPECIAL + words)
    rng = random.Random(0)
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(40, 120))) for _ in range(1500)]
    masker = mlm.Masker(text.load(vocab), vocab, seq_length=128, max_predictions=20)
    selected = selectable = masked = randomised = kept = 0
    for i in range(0, len(lines), 100):
        b = {k: v.numpy() for k, v in masker(tf.constant(lines[i:i + 100]), [0, i]).items()}
        weights = b["masked_lm_weights"].astype(bool)
        rows = np.nonzero(weights)[0]
        positions = b["masked_lm_positions"][weights]
        now = b["input_word_ids"][rows, positions]
        before = b["original_ids"][rows, positions]
        assert (b["masked_lm_ids"][weights] == before).all()
        assert not np.isin(before, [0, 2, 3]).any()  # never [PAD], [CLS], [SEP]
        selected += len(positions)
        per_row = (b["original_ids"] > 4).sum(axis=1)
        selectable += int(per_row.sum())
        # tensorflow-text selects ceil(15%) of each sequence's selectable pieces.
        expected = np.ceil(np.float32(0.15) * per_row.astype(np.float32))  # in float32, as TF does
        np.testing.assert_array_equal(weights.sum(axis=1), np.minimum(20, expected))
        masked += int((now == 4).sum())
        kept += int(((now == before) & (now != 4)).sum())
        randomised += int(((now != before) & (now != 4)).sum())
    assert selected / selectable == pytest.approx(0.15, abs=0.01)
    assert masked / selected == pytest.approx(0.80, abs=0.02)
    # A random token can equal the original (1 in 45 here); those count as kept.
    assert randomised / selected == pytest.approx(0.10 * 44 / 45, abs=0.015)
    assert kept / selected == pytest.approx(0.10 + 0.10 / 45, abs=0.015)


def test_masks_come_from_the_seed_not_from_thread_timing(tmp_path):
    words = [f"w{i}" for i in range(40)]
    vocab = write(tmp_path / "vocab.txt", SPECIAL + words)
    rng = random.Random(1)
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 60))) for _ in range(640)]
    masker = mlm.Masker(text.load(vocab), vocab, seq_length=64, max_predictions=10)

    def epoch(seed):
        ds = (tf.data.Dataset.from_tensor_slices(lines).batch(32).enumerate()
              .map(lambda i, t: masker(t, tf.stack([tf.constant(seed, tf.int64), i])),
                   num_parallel_calls=8, deterministic=False))
        out = {}
        for b in ds.as_numpy_iterator():  # Any arrival order: key each batch by its content.
            out[b["original_ids"].tobytes()] = (b["masked_lm_positions"], b["input_word_ids"])
        return out

    first, again, other = epoch(3), epoch(3), epoch(4)
    assert first.keys() == again.keys() == other.keys()
    for key in first:
        np.testing.assert_array_equal(first[key][0], again[key][0])
        np.testing.assert_array_equal(first[key][1], again[key][1])
    assert any((first[k][0] != other[k][0]).any() for k in first)  # Another seed: other masks.
    # The selection is spread over the sequence, not its first pieces.
    positions = np.concatenate([p[p > 0] for p, _ in first.values()])
    lengths = np.concatenate([(ids > 0).sum(1).repeat((p > 0).sum(1)) for p, ids in first.values()])
    assert 0.4 < np.mean(positions / lengths) < 0.6


def test_learns_that_one_token_always_follows_another(tmp_path):
    words = [f"w{i}" for i in range(20)]
    vocab = write(tmp_path / "vocab.txt", SPECIAL + words + ["alpha", "beta"])
    rng = random.Random(1)

    def line():
        seq = [rng.choice(words) for _ in range(8)]
        at = rng.randrange(8)
        return " ".join(seq[:at] + ["alpha", "beta"] + seq[at:])

    corpus = write(tmp_path / "corpus.txt", [line() for _ in range(3000)])
    cfg = encoders.BertConfig(num_layers=2, hidden_size=32, num_heads=2, vocab_size=len(SPECIAL) + 22,
                              max_position=32)
    handle = encoders.export_random(str(tmp_path / "enc"), cfg, vocab)
    summary = mlm.train(handle, [corpus], str(tmp_path / "encoder"), str(tmp_path / "train"),
                        MLMConfig(seq_length=16, max_predictions=4, train=training.Schedule(
                            epochs=5, batch_size=32, learning_rate=2e-3, warmup=0.05)), seed=0)
    assert summary["heldout_loss_after"] < summary["heldout_loss_before"]

    trained = hub.load(summary["encoder"])
    alpha, beta, mask = len(SPECIAL) + 20, len(SPECIAL) + 21, 4
    ids = [[2, len(SPECIAL) + rng.randrange(20), alpha, mask, len(SPECIAL) + rng.randrange(20), 3]
           for _ in range(50)]
    ids = tf.constant(ids, tf.int32)
    out = trained.mlm({"input_word_ids": ids, "input_mask": tf.ones_like(ids),
                       "input_type_ids": tf.zeros_like(ids),
                       "masked_lm_positions": tf.fill([50, 1], 3)})
    predicted = tf.argmax(out["mlm_logits"][:, 0], axis=-1).numpy()
    assert (predicted == beta).mean() >= 0.9


def test_heldout_loss_falls_on_real_text_and_export_is_hub_format(tmp_path):
    lines = open(needs_shared("unlabeled", "agnews.txt"), encoding="utf-8").read().splitlines()[:1200]
    corpus = write(tmp_path / "agnews.txt", lines)
    counts = {}
    for w in " ".join(lines).lower().split():
        counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=counts.get, reverse=True)[:1500]
    vocab = write(tmp_path / "vocab.txt", SPECIAL + [w for w in words if w not in SPECIAL])
    size = len(open(vocab).read().splitlines())
    handle = encoders.export_random(str(tmp_path / "enc"), encoders.BertConfig(
        num_layers=1, hidden_size=32, num_heads=2, vocab_size=size, max_position=64), vocab)
    summary = mlm.train(handle, [corpus], str(tmp_path / "encoder"), str(tmp_path / "train"),
                        MLMConfig(seq_length=48, heldout=0.1, train=training.Schedule(
                            epochs=1, batch_size=32, learning_rate=2e-3)), seed=0)
    assert summary["heldout_loss_after"] < summary["heldout_loss_before"] - 0.5
    layer = encoders.load(summary["encoder"])  # The hub encoder API, as before.
    before = {v.name: v.numpy() for v in hub.load(handle).variables}
    after = {v.name: v.numpy() for v in hub.load(summary["encoder"]).variables}
    assert not np.allclose(before["embeddings/word_embeddings:0"], after["embeddings/word_embeddings:0"])
    ids = tf.constant([[2, 5, 3]])
    out = layer({"input_word_ids": ids, "input_mask": tf.ones_like(ids), "input_type_ids": tf.zeros_like(ids)})
    assert out["pooled_output"].shape == (1, 32)


def test_encoder_without_mlm_is_refused(tmp_path, vocab_file):
    handle = encoders.export(encoders.build(encoders.BertConfig(
        num_layers=1, hidden_size=8, num_heads=2, vocab_size=12), with_mlm=False),
        str(tmp_path / "enc"), vocab_file)
    from distill.errors import UserError
    with pytest.raises(UserError, match="has no .mlm subobject"):
        mlm.train(handle, [vocab_file], str(tmp_path / "encoder"), str(tmp_path / "train"),
                  MLMConfig(), seed=0)
