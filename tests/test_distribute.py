"""Scale-out: mirrored over two CPU devices, two multi-worker processes, two label workers."""
import glob
import json
import os
import socket

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from conftest import ok, run_cli
from distill import distribute, encoders
from distill.config import Config
from distill.errors import UserError

# alpha 0.5 on the small task's mixed transfer set (300 labeled + 600 unlabeled texts): the
# hard term must weigh each labeled example alike whatever replica its batch share lands on.
TRAIN = ["--set", "student.stages=['distill']", "--set", "student.distill.epochs=1",
         "--set", "student.distill.batch_size=32", "--set", "student.distill.dropout=0.0",
         "--set", "student.distill.alpha=0.5"]


def distill_cli(*args, env=None, wait=True):
    """The command, which must succeed (or, with wait=False, the running process)."""
    result = run_cli(*args, env=env, wait=wait)
    return ok(result) if wait else result


def loss_curve(stage_dir):
    """The `loss` scalars that training.fit logged to TensorBoard, by step."""
    events = event_accumulator.EventAccumulator(os.path.join(stage_dir, "train", "tensorboard"),
                                                size_guidance={"tensors": 0})
    events.Reload()
    return {e.step: float(e.tensor_proto.float_val[0] if e.tensor_proto.float_val
                          else np.frombuffer(e.tensor_proto.tensor_content, np.float32)[0])
            for e in events.Tensors("loss")}


def store_logits(store):
    from distill import store as store_lib

    dataset, _ = store_lib.read(store)
    return np.stack([ex["logits"] for ex in dataset.as_numpy_iterator()])


@pytest.fixture(scope="module")
def no_dropout_student(small_task, tmp_path_factory):
    """The small task's student without dropout, so that one device and two see the same loss."""
    vocab = [line for line in open(small_task["vocab"], encoding="utf-8").read().splitlines()]
    cfg = encoders.BertConfig(num_layers=2, hidden_size=64, num_heads=2, vocab_size=len(vocab),
                              max_position=64, dropout=0.0)
    return encoders.export_random(str(tmp_path_factory.mktemp("nodrop") / "encoder"), cfg,
                                  small_task["vocab"], seed=1)


@pytest.mark.large
def test_mirrored_and_bfloat16_give_the_loss_curve_of_one_device_with_alpha_and_mixed_data(small_task, no_dropout_student, tmp_path):
    sets = small_task["sets"] + TRAIN + ["--set", f"student.encoder={no_dropout_student}"]
    distill_cli("run", "configs/demo.yaml", "--output", str(tmp_path / "one"), *sets)
    two = distill_cli("run", "configs/demo.yaml", "--output", str(tmp_path / "two"), *sets,
                      "--set", "distribute.strategy=mirrored", "--set", "distribute.cpu_devices=2")
    assert "global batch 32 over 2 replicas (MirroredStrategy)" in two.stdout + two.stderr
    # Labeling split across the replicas gives the same soft labels.
    np.testing.assert_allclose(store_logits(str(tmp_path / "two" / "store")),
                               store_logits(str(tmp_path / "one" / "store")), atol=1e-5)
    one_curve = loss_curve(str(tmp_path / "one" / "student" / "distill"))
    two_curve = loss_curve(str(tmp_path / "two" / "student" / "distill"))
    assert sorted(one_curve) == sorted(two_curve) and len(one_curve) >= 3
    np.testing.assert_allclose([two_curve[s] for s in sorted(two_curve)],
                               [one_curve[s] for s in sorted(one_curve)], rtol=1e-3)
    assert one_curve[min(one_curve)] != one_curve[max(one_curve)]  # It did learn something.

    # bfloat16 (oneDNN's graph rewrite): the same curve, to bfloat16's precision.
    bf16 = distill_cli("run", "configs/demo.yaml", "--output", str(tmp_path / "bf16"), *sets,
                       "--set", "precision=bfloat16")
    assert "Traceback" not in bf16.stderr
    bf16_curve = loss_curve(str(tmp_path / "bf16" / "student" / "distill"))
    np.testing.assert_allclose([bf16_curve[s] for s in sorted(bf16_curve)],
                               [one_curve[s] for s in sorted(one_curve)], rtol=0.05)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.large
def test_multi_worker_trains_a_student_with_two_processes(small_task, no_dropout_student, tmp_path):
    run = tmp_path / "run"
    sets = small_task["sets"] + TRAIN + ["--set", f"student.encoder={no_dropout_student}"]
    distill_cli("teacher", "configs/demo.yaml", "--output", str(run), *sets)
    distill_cli("label", "configs/demo.yaml", "--output", str(run), *sets)
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    workers = [distill_cli("distill", "configs/demo.yaml", "--output", str(run), *sets,
                           "--set", "distribute.strategy=multi_worker", wait=False,
                           env={"TF_CONFIG": json.dumps({"cluster": cluster,
                                                         "task": {"type": "worker", "index": i}})})
               for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert all("global batch 32 over 2 replicas" in out for out in outputs)
    done = json.loads((run / "student" / "distill" / "done.json").read_text())
    assert done["summary"]["steps"] == 29  # ceil(900 / 32): each step took one global batch.
    assert (run / "student" / "distill" / "model" / "saved_model.pb").is_file()
    assert not glob.glob(str(run / "**" / "*.tmp*"), recursive=True)
    curve = loss_curve(str(run / "student" / "distill"))
    assert len(curve) >= 3 and all(np.isfinite(list(curve.values())))


@pytest.mark.large
def test_two_label_worker_processes_make_the_store_of_one(small_task, tmp_path):
    for run in ("one", "two"):
        distill_cli("teacher", "configs/demo.yaml", "--output", str(tmp_path / run), *small_task["sets"])
    distill_cli("label", "configs/demo.yaml", "--output", str(tmp_path / "one"), *small_task["sets"])
    workers = [distill_cli("label", "configs/demo.yaml", "--output", str(tmp_path / "two"),
                           *small_task["sets"], "--worker", str(w), "--num-workers", "2", wait=False)
               for w in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    one, two = tmp_path / "one" / "store", tmp_path / "two" / "store"
    names = sorted(p.name for p in one.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in two.iterdir() if not p.name.startswith("."))
    assert len(names) == 10  # 9 shards and the manifest.
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_label_worker_comes_from_flags_or_tf_config(monkeypatch):
    cfg = Config()
    cfg.distribute.strategy = "multi_worker"
    assert distribute.label_worker(cfg, 1, 3) == (1, 3)
    assert distribute.label_worker(cfg) == (0, 1)
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": 1}}))
    assert distribute.label_worker(cfg) == (2, 3)
    cfg.distribute.strategy = "default"  # TF_CONFIG counts only under multi_worker.
    assert distribute.label_worker(cfg) == (0, 1)
    with pytest.raises(UserError, match=r"--worker 3: expected 0 <= worker < --num-workers \(2\)"):
        distribute.label_worker(cfg, 3, 2)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    cfg.distribute.strategy = "multi_worker"
    with pytest.raises(UserError, match="TF_CONFIG: expected JSON"):
        distribute.label_worker(cfg)
