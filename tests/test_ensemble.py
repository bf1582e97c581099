"""Teacher ensembles: one store whose logits combine the members', member logits kept."""
import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import ok, run_cli
from distill import config, models, store
from distill.errors import UserError


def member(small_task, path, seed):
    """A teacher classifier supplied ready: the task's teacher with its own random head."""
    model = models.build(small_task["teacher"], 2, dropout=0.0)
    kernel = model.get_layer("logits").kernel
    kernel.assign(tf.random.stateless_normal(kernel.shape, seed=[seed, 7]))
    return models.export(model, str(path), {"task": "sst2"})


def label(small_task, run, *sets):
    args = ["configs/demo.yaml", "--output", str(run), *small_task["sets"], *sets]
    ok(run_cli("teacher", *args))
    return ok(run_cli("label", *args))


def records(path):
    dataset, manifest = store.read(str(path))
    return list(dataset.batch(10_000).as_numpy_iterator())[0], manifest


def test_a_two_teacher_store_is_the_combination_of_two_single_teacher_stores(small_task, tmp_path):
    combine = "log_probs"
    a, b = member(small_task, tmp_path / "a", 1), member(small_task, tmp_path / "b", 2)
    label(small_task, tmp_path / "one", "--set", f"teacher.finetuned={a}")
    label(small_task, tmp_path / "two", "--set", f"teacher.finetuned={b}")
    result = label(small_task, tmp_path / "both", "--set", "teacher.finetuned=null", "--set",
                   f"teacher.ensemble=[{{'finetuned': '{a}'}}, {{'finetuned': '{b}'}}]",
                   "--set", f"teacher.combine={combine}", "--set", "teacher.weights=[3, 1]",
                   "--set", "teacher.member_logits=true")
    one, _ = records(tmp_path / "one" / "store")
    two, _ = records(tmp_path / "two" / "store")
    both, manifest = records(tmp_path / "both" / "store")
    assert list(both["id"]) == list(one["id"]) == list(two["id"])
    la, lb = one["logits"], two["logits"]
    if combine == "log_probs":
        la, lb = tf.nn.log_softmax(la).numpy(), tf.nn.log_softmax(lb).numpy()
    np.testing.assert_allclose(both["logits"], 0.75 * la + 0.25 * lb, atol=1e-5)
    np.testing.assert_allclose(both["member_logits"][:, 0], one["logits"], atol=1e-6)
    np.testing.assert_allclose(both["member_logits"][:, 1], two["logits"], atol=1e-6)
    teacher = manifest["teacher"]
    assert [m["finetuned"] for m in teacher["members"]] == [a, b]
    assert teacher["combine"] == combine and teacher["member_weights"] == [0.75, 0.25]
    assert all(len(m["fingerprint"]) == 16 for m in teacher["members"])
    assert store.teacher_name(manifest) == f"ensemble of 2 ({combine}): {a}, {b}"
    assert "member 0" in result.stdout and "member 1" in result.stdout  # cost per teacher
    done = json.loads((tmp_path / "both" / "teacher" / "done.json").read_text())
    assert [m["supplied"] for m in done["summary"]["members"]] == [a, b]


def test_combine_by_logits_and_for_regression():
    from distill import ensemble

    members = np.array([[[1.0, 3.0]], [[2.0, -1.0]]])  # 2 members x 1 example x 2 classes
    np.testing.assert_allclose(ensemble.combine(members, "logits", [0.5, 0.5], False),
                               [[1.5, 1.0]])
    log_p = members - np.log(np.exp(members).sum(-1, keepdims=True))
    np.testing.assert_allclose(ensemble.combine(members, "log_probs", [0.25, 0.75], False),
                               0.25 * log_p[0] + 0.75 * log_p[1], rtol=1e-6)
    # Regression: outputs are averaged as they are, whatever `combine` says.
    np.testing.assert_allclose(ensemble.combine(np.array([[[2.0]], [[4.0]]]), "log_probs",
                                                [0.5, 0.5], True), [[3.0]])


def test_bad_ensembles_are_refused_when_the_config_loads():
    with pytest.raises(UserError, match=r"teacher.ensemble\[1\]: expected a mapping"):
        config.load(None, ["teacher.ensemble=[{'seed': 1}, {'lr': 2}]"])
    with pytest.raises(UserError, match="teacher.weights: expected 2 positive numbers"):
        config.load(None, ["teacher.ensemble=[{'seed': 1}, {'seed': 2}]", "teacher.weights=[1]"])
    with pytest.raises(UserError, match="teacher.combine"):
        config.load(None, ["teacher.combine=vote"])
