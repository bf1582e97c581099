"""End to end: the demo, a GLUE directory (real SST-2 when present), and TFDS under mock_data."""
import collections
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import SHARED_DATA, run_cli, write
from distill import config, encoders, store as store_lib, text
from pipelines import glue


distill_cli = run_cli


def read_store_plainly(store):
    """Reads a store with nothing but tf.data and the manifest (the contract in DESIGN.md)."""
    manifest = json.load(open(os.path.join(store, "manifest.json")))
    files = [os.path.join(store, s["file"]) for s in manifest["shards"]]
    spec = {"id": tf.io.FixedLenFeature([], tf.string),
            "logits": tf.io.VarLenFeature(tf.float32)}
    parsed = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(files)]
    return manifest, [p["id"].numpy() for p in parsed], [p["logits"].values.numpy() for p in parsed]


@pytest.mark.large
def test_demo_writes_a_complete_run_and_resumes(tmp_path):
    out = tmp_path / "demo"
    result = distill_cli("demo", "--output", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # The tool's own lines only: no TensorFlow C++ log lines, no library warnings; the
    # closing lines say where the report is.
    noise = [line for line in result.stderr.splitlines()
             if re.match(r"[IWEF]\d{4} |WARNING|.*Warning:|.*cuInit|.*cudart_stub", line)]
    assert not noise, noise[:5]
    assert f"Open {out}/report.md" in result.stdout
    for name in ("teacher", "store", "student", "metrics.json", "report.md", "config.yaml"):
        assert (out / name).exists(), name
    # Finished stages keep their models, weights and logs, not what they would resume from.
    assert not list(out.rglob("checkpoints"))
    assert len(list(out.rglob("tensorboard"))) == 3  # teacher, distill, finetune
    for stage in ("teacher", "student/distill", "student/finetune"):
        assert (out / stage / "model" / "saved_model.pb").is_file(), stage

    manifest, ids, logits = read_store_plainly(str(out / "store"))
    assert manifest["complete"] and manifest["examples"] == 6000 == len(ids)
    assert len(set(ids)) == len(ids)
    assert {len(l) for l in logits} == {2}

    metrics = json.load(open(out / "metrics.json"))
    assert metrics["teacher"]["validation"]["accuracy"] > 0.75
    assert metrics["student"]["validation"]["accuracy"] > 0.75  # chance is about 0.5
    report = (out / "report.md").read_text()
    assert re.search(r"\| student .* \| 0\.\d{4} \|", report)
    assert (out / "submission" / "SST-2.tsv").read_text().startswith("index\tprediction\n0\t")

    again = distill_cli("demo", "--output", str(out), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("teacher", "label", "distill", "finetune"):
        assert re.search(rf"\[{stage}\] .*skipping", again.stdout), stage

    # A store made for SST-2 is refused for another task, and nothing changes.
    before = (out / "store" / "manifest.json").read_text()
    wrong = distill_cli("distill", str(out / "config.yaml"), "--output", str(out), "--set",
                        "task=cola", timeout=120)
    assert wrong.returncode == 2
    assert "made for task = 'sst2'; expected 'cola'" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert (out / "store" / "manifest.json").read_text() == before


def small_vocab(path, texts, size=3000):
    counts = collections.Counter(w for t in texts for w in t.lower().split())
    words = [w for w, _ in counts.most_common(size) if w not in text.SPECIAL_TOKENS]
    return write(path, [*text.SPECIAL_TOKENS, *words])


def tiny_models(tmp_path, vocab):
    size = len(open(vocab).read().split("\n")) - 1
    teacher = encoders.export_random(str(tmp_path / "teacher_enc"), encoders.BertConfig(
        num_layers=2, hidden_size=64, num_heads=2, vocab_size=size, max_position=64), vocab)
    student = encoders.export_random(str(tmp_path / "student_enc"), encoders.BertConfig(
        num_layers=1, hidden_size=32, num_heads=2, vocab_size=size, max_position=64), vocab, seed=1)
    return teacher, student


def glue_sst2_dir(tmp_path):
    """The real SST-2 when ../shared has it, else a small generated one in the same layout."""
    real = SHARED_DATA / "glue" / "SST-2"
    if real.exists():
        return str(real)
    rng = np.random.default_rng(0)
    good, bad = ["good", "great", "fine", "fun"], ["bad", "dull", "poor", "weak"]
    lines = []
    for _ in range(400):
        y = int(rng.integers(2))
        lines.append(f"the movie was {rng.choice(good if y else bad)}\t{y}")
    write(tmp_path / "SST-2" / "train.tsv", ["sentence\tlabel", *lines])
    write(tmp_path / "SST-2" / "dev.tsv", ["sentence\tlabel", *lines[:100]])
    return str(tmp_path / "SST-2")


@pytest.fixture(scope="module")
def glue_run(tmp_path_factory):
    """One small run from a GLUE directory (the real SST-2 when present), shared by two tests."""
    tmp_path = tmp_path_factory.mktemp("glue_run")
    glue_dir = glue_sst2_dir(tmp_path)
    train_texts = [line.split("\t")[0] for line in open(os.path.join(glue_dir, "train.tsv"))][1:2001]
    vocab = small_vocab(tmp_path / "vocab.txt", train_texts)
    teacher, student = tiny_models(tmp_path, vocab)
    transfer = ["labeled:train"]
    agnews = SHARED_DATA / "unlabeled" / "agnews.txt"
    if agnews.exists():
        transfer.append(f"text:{agnews}")
    cfg = config.load(None, [
        f"data.labeled=glue_dir:{glue_dir}", f"data.transfer={transfer!r}",
        "data.max_train_examples=300", "data.max_transfer_examples=200",
        "data.max_eval_examples=200",
        f"teacher.encoder={teacher}", f"teacher.preprocessor={vocab}", "teacher.seq_length=48",
        "teacher.train.epochs=1", "teacher.train.learning_rate=1e-3", "teacher.shard_size=128",
        f"student.encoder={student}", f"student.preprocessor={vocab}", "student.seq_length=48",
        "student.distill.epochs=1", "student.distill.learning_rate=1e-3",
        # A random 2-layer teacher after 10 steps need not beat the majority class (it scored
        # 0.45 against 0.55 once): this test is about the pipeline's path, so the gate is open.
        "teacher.min_margin=-1.0",
    ])
    run_dir = tmp_path / "run"
    return run_dir, glue.run(cfg, str(run_dir)), len(transfer), glue_dir


@pytest.mark.large
def test_run_from_a_glue_directory(glue_run):
    run_dir, results, entries, glue_dir = glue_run
    manifest, ids, logits = read_store_plainly(str(run_dir / "store"))
    assert manifest["examples"] == len(ids) == 200 * entries
    assert len(set(ids)) == len(ids)
    real = glue_dir.startswith(str(SHARED_DATA))
    assert results["student"]["validation"]["examples"] == (200 if real else 100)
    # The reported accuracy is that of the saved dev predictions, against the dev file's own
    # labels, in the file's order (the first 200 rows: data.max_eval_examples).
    with open(os.path.join(glue_dir, "dev.tsv")) as f:
        gold = [int(line.rstrip("\n").split("\t")[-1]) for line in f.readlines()[1:201]]
    predictions = np.load(run_dir / "predictions" / "student-validation.npz")
    assert predictions["label"].tolist() == gold
    assert results["student"]["validation"]["accuracy"] == pytest.approx(
        accuracy_score(gold, predictions["logits"].argmax(-1)))
    assert f"| {results['student']['validation']['accuracy']:.4f} |" in (
        run_dir / "report.md").read_text()


@pytest.mark.large
def test_the_trained_student_encoder_exports_in_the_tf_hub_format(glue_run, tmp_path, capsys):
    """The student trained natively; its encoder alone loads with hub.KerasLayer and, under
    a fresh classifier head, gives the run's own student logits on its dev predictions."""
    import tensorflow as tf
    import tensorflow_hub as hub
    from pipelines import cli

    run_dir = glue_run[0]
    out = tmp_path / "student_encoder"
    assert cli.main(["export", str(run_dir), "--format", "encoder", "--output", str(out)]) == 0
    assert "in the TF Hub format; pooled output within" in capsys.readouterr().out
    loaded = hub.KerasLayer(str(out))
    served = tf.saved_model.load(str(run_dir / "student" / "distill" / "model"))
    inputs = {"input_word_ids": tf.constant([[2, 5, 6, 3]]), "input_mask": tf.ones((1, 4), tf.int32),
              "input_type_ids": tf.zeros((1, 4), tf.int32)}
    pooled = loaded(inputs)["pooled_output"]
    head = [v for v in served.variables if v.name.startswith("logits/")]
    kernel = next(v for v in head if "kernel" in v.name)
    bias = next(v for v in head if "bias" in v.name)
    np.testing.assert_allclose(pooled @ kernel + bias,
                               served.signatures["serving_default"](**inputs)["logits"], atol=1e-5)


@pytest.mark.large
def test_export_serves_raw_strings_without_this_project(glue_run, tmp_path):
    run_dir = glue_run[0]
    from pipelines import cli

    assert cli.main(["export", str(run_dir), "--output", str(tmp_path / "serving")]) == 0
    summary = json.loads((run_dir / "serving.json").read_text())
    check = summary["check_against_evaluation"]
    assert check["same_predictions"] and check["max_abs_difference"] < 1e-5
    assert summary["latency_ms_batch_1"] > 0 and summary["latency_ms_batch_32"] > 0
    assert "## Serving export" in (run_dir / "report.md").read_text()
    script = (
        "import sys\n"
        "for name in ('distill', 'teachers', 'students', 'pipelines'):\n"
        "    sys.modules[name] = None  # this project cannot be imported here\n"
        "import json, tensorflow as tf, tensorflow_text\n"
        f"m = tf.saved_model.load({str(tmp_path / 'serving')!r})\n"
        "out = m.signatures['serving_default'](text_a=tf.constant(['a fine movie', 'dull']))\n"
        "print(json.dumps([out['probabilities'].numpy().sum(axis=1).round(4).tolist(),"
        " [l.decode() for l in out['label'].numpy()]]))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    sums, labels = json.loads(result.stdout.strip().splitlines()[-1])
    assert sums == [1.0, 1.0] and set(labels) <= {"negative", "positive"}


@pytest.mark.large
def test_run_from_tfds_mock_data_on_a_pair_task(tmp_path, vocab_file, tiny_encoder):
    domain = write(tmp_path / "domain.txt", ["the good movie", "not very bad", "the movies"] * 20)
    cfg = config.load(None, [
        f"student.mlm.data=[{domain!r}]", "student.mlm.seq_length=16",
        "task=rte", "data.labeled=tfds",
        "data.transfer=['labeled:train', 'tfds:snli:train:premise,hypothesis']",
        f"teacher.encoder={tiny_encoder}", f"teacher.preprocessor={vocab_file}",
        "teacher.seq_length=32", "teacher.train.epochs=1", "teacher.shard_size=8",
        f"student.encoder={tiny_encoder}", f"student.preprocessor={vocab_file}",
        "student.seq_length=32", "student.init=random", "student.stages=['distill', 'finetune']",
        "student.distill.alpha=0.5", "student.distill.temperature=2.0",
        "student.distill.epochs=1", "student.finetune.epochs=1",
        "teacher.min_margin=-1.0",  # mock_data's labels are random: nothing to learn.
    ])
    with tfds.testing.mock_data(num_examples=20):
        results = glue.run(cfg, str(tmp_path / "run"))
    _, manifest = store_lib.read(str(tmp_path / "run" / "store"), expect={"task": "rte"})
    # mock_data's random texts repeat, so some are dropped as duplicates or as dev/test text.
    sources = manifest["source"]["sources"]
    assert [s["read"] for s in sources] == [20, 20]
    assert manifest["examples"] == sum(s["kept"] for s in sources) > 0
    assert len(manifest["shards"]) == -(-manifest["examples"] // 8)
    assert results["teacher"]["validation"]["examples"] == 20
    assert (tmp_path / "run" / "submission" / "RTE.tsv").read_text().count("\n") == 21
    assert (tmp_path / "run" / "student" / "finetune" / "done.json").exists()
    # The MLM stage ran first, and distillation started from its encoder.
    mlm_done = json.load(open(tmp_path / "run" / "student" / "mlm" / "done.json"))
    assert mlm_done["summary"]["texts"] == 60
    distill_inputs = json.load(open(tmp_path / "run" / "student" / "distill" / "inputs.json"))
    assert distill_inputs["student"]["encoder"] == str(tmp_path / "run" / "student" / "mlm" / "encoder")


@pytest.mark.large
@pytest.mark.parametrize("fmt,quantize", [("tflite", "none"), ("tflite", "int8"),
                                          ("onnx", "none"), ("onnx", "dynamic")])
def test_token_id_exports_predict_as_the_savedmodel(glue_run, tmp_path, fmt, quantize):
    """The TFLite model run by LiteRT (ai_edge_litert), and the ONNX model run by ONNX
    Runtime, on the documented token-id contract, against the run's own SavedModel on the
    same packed dev examples."""
    import tensorflow as tf

    from distill import encoders, text
    from pipelines import cli
    from students import onnx_export, tflite

    run_dir = glue_run[0]
    out = tmp_path / f"{fmt}_{quantize}"
    assert cli.main(["export", str(run_dir), "--output", str(out), "--format", fmt,
                     "--quantize", quantize]) == 0
    contract = json.loads((out / "tokenizer.json").read_text())
    assert contract["seq_length"] == 48 and contract["inputs"] == list(encoders.INPUT_NAMES)
    # Pack dev texts as the contract says, with the shipped vocab.txt alone.
    packer = text.Packer(text.load(str(out / "vocab.txt"), contract["lower_case"]),
                         contract["seq_length"])
    dev = [line.split("\t")[0] for line in open(os.path.join(glue_run[3], "dev.tsv"))][1:51]
    batch = packer({"text_a": tf.constant(dev)}, full_length=True)
    if fmt == "tflite":
        interpreter = tflite.Interpreter(str(out / "model.tflite"))
        assert type(interpreter.interpreter).__module__.startswith("ai_edge_litert")
    else:
        interpreter = onnx_export.Session(str(out / "model.onnx"))
    saved = tf.saved_model.load(str(run_dir / "student" / "distill" / "model"))
    got, want = [], []
    for i in range(len(dev)):
        example = {n: batch[n][i:i + 1].numpy() for n in encoders.INPUT_NAMES}
        got.append(interpreter(example))
        want.append(saved.signatures["serving_default"](
            **{n: tf.constant(v) for n, v in example.items()})["logits"].numpy()[0])
    got, want = np.stack(got), np.stack(want)
    agreement = (got.argmax(-1) == want.argmax(-1)).mean()
    summary = json.loads((run_dir / f"{fmt}.json").read_text())
    if quantize == "none":  # Float: the same logits to float32 rounding.
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert summary["agreement"] == 1.0
    else:  # int8: at least 90% of predictions agree.
        assert agreement >= 0.9, agreement
        assert summary["size_bytes"] < 0.5 * summary["savedmodel_size_bytes"]
    assert summary["quantize"] == quantize and summary["dev_examples"] > 0
    assert f"## {'TFLite' if fmt == 'tflite' else 'ONNX'} export" in (run_dir / "report.md").read_text()
