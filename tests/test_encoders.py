"""Locally built encoders speak the TF Hub encoder API, `.mlm` included."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from distill import encoders
from distill.errors import UserError


def batch(ids, mask):
    ids = tf.constant(ids, tf.int32)
    return {"input_word_ids": ids, "input_mask": tf.constant(mask, tf.int32),
            "input_type_ids": tf.zeros_like(ids)}


def test_outputs_of_the_hub_encoder_api(tiny_encoder):
    layer = encoders.load(tiny_encoder)
    out = layer(batch([[2, 6, 8, 3, 0]], [[1, 1, 1, 1, 0]]))
    assert out["sequence_output"].shape == (1, 5, 16)
    assert out["pooled_output"].shape == (1, 16)
    assert len(out["encoder_outputs"]) == 2
    np.testing.assert_allclose(out["default"], out["pooled_output"])
    np.testing.assert_allclose(out["encoder_outputs"][-1], out["sequence_output"])


def test_padding_does_not_change_the_outputs(tiny_encoder):
    layer = encoders.load(tiny_encoder)
    short = layer(batch([[2, 6, 8, 3]], [[1, 1, 1, 1]]))
    padded = layer(batch([[2, 6, 8, 3, 0, 0, 0]], [[1, 1, 1, 1, 0, 0, 0]]))
    np.testing.assert_allclose(short["pooled_output"], padded["pooled_output"], atol=1e-5)
    np.testing.assert_allclose(short["sequence_output"], padded["sequence_output"][:, :4], atol=1e-5)


def test_trainable_variables_exclude_the_mlm_head(tiny_encoder):
    layer = encoders.load(tiny_encoder, trainable=True)
    names = [v.name for v in layer.trainable_variables]
    assert len(names) == 5 + 2 * 16 + 2  # embeddings, 2 transformer layers, pooler
    assert not any("mlm" in n for n in names)


def test_mlm_subobject(tiny_encoder):
    module = hub.load(tiny_encoder)
    inputs = dict(batch([[2, 4, 8, 3]], [[1, 1, 1, 1]]), masked_lm_positions=tf.constant([[1, 2]]))
    out = module.mlm(inputs)
    assert out["mlm_logits"].shape == (1, 2, 12)
    assert module.vocab_file.asset_path.numpy().decode().endswith("vocab.txt")
    assert bool(module.do_lower_case.numpy())


def test_bad_handles_are_refused(tmp_path, tiny_preprocessor):
    with pytest.raises(UserError, match="no such directory"):
        encoders.load(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="could not be loaded"):
        encoders.load(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="does not accept the encoder inputs|could not be loaded"):
        encoders.load(tiny_preprocessor)


def test_hidden_must_divide_by_heads():
    with pytest.raises(UserError, match="multiple of num_heads"):
        encoders.BertConfig(hidden_size=10, num_heads=3)


def test_kaggle_model_handles_go_wherever_a_tf_hub_handle_goes(monkeypatch, tmp_path):
    """A handle copied from a Kaggle model page is loaded from its Kaggle Models URL, which
    tensorflow_hub resolves; preflight names the handle as the user gave it."""
    import tensorflow_hub as hub

    from distill import handles

    kaggle = "tensorflow/bert/tensorFlow2/en-uncased-l-12-h-768-a-12/3"
    assert handles.url(kaggle) == "https://www.kaggle.com/models/" + kaggle
    assert handles.resolve(kaggle, "teacher.encoder") == handles.url(kaggle)
    assert handles.url("https://tfhub.dev/tensorflow/bert_en_uncased_L-12_H-768_A-12/4") == \
        "https://tfhub.dev/tensorflow/bert_en_uncased_L-12_H-768_A-12/4"
    local = tmp_path / "tensorflow" / "bert" / "tensorflow2" / "v" / "3"
    local.mkdir(parents=True)
    assert not handles.is_remote(str(local))  # A local directory shaped like one stays local.
    asked = []

    def offline(handle):
        asked.append(handle)
        raise OSError("no network")

    monkeypatch.setattr(hub, "resolve", offline)
    with pytest.raises(UserError, match=rf"teacher.encoder: handle '{kaggle}' could not be "
                                        rf"fetched: no network"):
        handles.check_saved_model(kaggle, "teacher.encoder")
    assert asked == ["https://www.kaggle.com/models/" + kaggle]
