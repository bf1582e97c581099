"""The catalogue of bad input (issue 6): each case through the `distill` command.

Every case must end with exit status 2 and one line on stderr that names the
file and line or the field and says what was expected, no traceback, and every
file already in the run directory (and in the store it reads) unchanged.
"""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, write
from pipelines import cli

SST2_HEADER = "sentence\tlabel"


@pytest.fixture(scope="module")
def prepared(small_task, tmp_path_factory):
    """A run directory with a finished teacher and a complete soft-label store."""
    run = tmp_path_factory.mktemp("prepared") / "run"
    args = ["configs/demo.yaml", "--output", str(run), *small_task["sets"]]
    assert cli.main(["teacher", *args]) == 0
    assert cli.main(["label", *args]) == 0
    return run


def snapshot(*roots):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in pathlib.Path(root).rglob("*") if p.is_file()}


def refused(argv, message, capsys, *watched, seconds=None):
    """Runs `distill ARGV`; checks status 2, one error line with `message`, nothing changed
    (and, with `seconds`, that the refusal came within that time).

    Returns the error line."""
    before = snapshot(*watched)
    t0 = time.time()
    status = cli.main([str(a) for a in argv])
    took = time.time() - t0
    err = capsys.readouterr().err
    assert seconds is None or took < seconds, f"refused after {took:.1f} s"
    assert status == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("distill: error:")]
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    after = snapshot(*watched)
    assert {k: after.get(k) for k in before} == before, "a file that existed was changed"
    return lines[0]


def fresh_copy(prepared, tmp_path):
    """A copy of the prepared run, so that each case starts from the same files."""
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    return run


def glue_dir(tmp_path, rows, name="SST-2", header=SST2_HEADER, raw=None):
    path = tmp_path / name
    if raw is not None:
        path.mkdir()
        (path / "train.tsv").write_bytes(raw)
    else:
        write(path / "train.tsv", [header, *rows])
    return path


def teacher_on(data_dir, run, small_task, *extra):
    """`distill teacher` on D_L = `data_dir`, fine-tuning, into `run` (which holds earlier work)."""
    run.mkdir(exist_ok=True)
    (run / "notes.txt").write_text("earlier work")
    return ["teacher", "configs/demo.yaml", "--output", run, *small_task["sets"],
            "--set", f"data.labeled=glue_dir:{data_dir}", "--set", "teacher.finetuned=null", *extra]


TSV_CASES = {
    "short row": (["good movie\t1", "no label here"], "train.tsv:3: row has 1 tab-separated"),
    "label outside the label set": (["good movie\t1", "bad movie\tmaybe"],
                                    "train.tsv:3: label 'maybe' is outside the label set"),
    "empty text": (["good movie\t1", " \t0"], "train.tsv:3: text_a is empty"),
}


@pytest.mark.parametrize("case", sorted(TSV_CASES))
def test_bad_tsv_rows(case, prepared, small_task, tmp_path, capsys):
    rows, message = TSV_CASES[case]
    data_dir = glue_dir(tmp_path, rows)
    run = tmp_path / "run"
    refused(teacher_on(data_dir, run, small_task), f"{data_dir}/{message}", capsys, run)


def test_wrong_header(prepared, small_task, tmp_path, capsys):
    data_dir = glue_dir(tmp_path, ["good movie\t1"], header="text\tlabel")
    run = tmp_path / "run"
    refused(teacher_on(data_dir, run, small_task),
            f"{data_dir}/train.tsv:1: header lacks column(s) ['sentence']", capsys, run)


def test_invalid_utf8(prepared, small_task, tmp_path, capsys):
    data_dir = glue_dir(tmp_path, None, raw=b"sentence\tlabel\nok\t1\nbad \xff byte\t0\n")
    run = tmp_path / "run"
    refused(teacher_on(data_dir, run, small_task), f"{data_dir}/train.tsv:3: invalid UTF-8",
            capsys, run)


def test_non_numeric_regression_target(prepared, small_task, tmp_path, capsys):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    data_dir = glue_dir(tmp_path, ["0\tmain\tf\t2012\t1\ts\ts\tA man sings.\tA man sings.\thigh"],
                        name="STS-B", header=header)
    run = tmp_path / "run"
    refused(teacher_on(data_dir, run, small_task, "--set", "task=stsb", "--set", "student.distill.loss=mse"),
            f"{data_dir}/train.tsv:2: label 'high' is not a number", capsys, run)


def test_unknown_task(prepared, small_task, capsys):
    refused(["distill", "configs/demo.yaml", "--output", prepared, *small_task["sets"],
             "--set", "task=sst3"], "Unknown task 'sst3'", capsys, prepared)


def test_config_key_that_does_not_exist(prepared, small_task, capsys):
    refused(["distill", "configs/demo.yaml", "--output", prepared, *small_task["sets"],
             "--set", "student.distill.temprature=2"],
            "Config key 'student.distill.temprature' does not exist. Did you mean "
            "'student.distill.temperature'?",
            capsys, prepared)


def test_seq_length_too_small_for_a_pair(prepared, small_task, capsys):
    refused(["distill", "configs/demo.yaml", "--output", prepared, *small_task["sets"],
             "--set", "task=rte", "--set", "student.seq_length=4"],
            "student.seq_length=4 cannot hold a pair with its [CLS]/[SEP] tokens; expected at "
            "least 5", capsys, prepared)


def student_from(run, small_task, store=None, *extra):
    """`distill distill` into `run`, from `store` (default: the run's own)."""
    return ["distill", "configs/demo.yaml", "--output", run, *small_task["sets"],
            "--set", f"data.store={store or run / 'store'}", *extra]


def test_missing_handle(prepared, small_task, tmp_path, capsys):
    run = fresh_copy(prepared, tmp_path)
    refused(student_from(run, small_task, None, "--set", f"student.encoder={tmp_path}/nowhere"),
            f"Encoder handle '{tmp_path}/nowhere': no such directory", capsys, run)


def test_unloadable_handle(prepared, small_task, tmp_path, capsys):
    run = fresh_copy(prepared, tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "saved_model.pb").write_bytes(b"not a protobuf")
    refused(student_from(run, small_task, None, "--set", f"student.encoder={tmp_path}/junk"),
            f"Encoder handle '{tmp_path}/junk' could not be loaded", capsys, run)


def test_encoder_without_the_encoder_signature(prepared, small_task, tmp_path, capsys):
    run = fresh_copy(prepared, tmp_path)
    preprocessor = small_task["preprocessor"]  # A SavedModel, but no encoder.
    refused(student_from(run, small_task, None, "--set", f"student.encoder={preprocessor}"),
            f"Encoder handle '{preprocessor}' does not accept the encoder inputs", capsys, run)


def test_vocab_that_does_not_match_the_store(prepared, small_task, tmp_path, capsys):
    run = fresh_copy(prepared, tmp_path)
    other = tmp_path / "vocab.txt"
    other.write_text(pathlib.Path(small_task["vocab"]).read_text() + "extra\n")
    refused(["label", "configs/demo.yaml", "--output", run, *small_task["sets"],
             "--set", f"teacher.preprocessor={other}"],
            f"Soft-label store {run}/store was made by a different producer "
            f"(field 'preprocessor'", capsys, run)


def test_store_for_another_task(prepared, small_task, tmp_path, capsys):
    run = fresh_copy(prepared, tmp_path)
    refused(student_from(run, small_task, None, "--set", "task=cola"),
            f"Soft-label store {run}/store was made for task = 'sst2'; expected 'cola'",
            capsys, run)


def damaged_copy(prepared, tmp_path, damage):
    store = tmp_path / "store"
    shutil.copytree(prepared / "store", store)
    damage(store)
    return store


def flip_a_bit(store):
    shard = store / "soft_labels-00001-of-00009.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))


def truncate(store):
    shard = store / "soft_labels-00001-of-00009.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-100])


def unfinish(store):
    manifest = json.loads((store / "manifest.json").read_text())
    del manifest["shards"][2]["sha256"]
    manifest["complete"] = False
    (store / "manifest.json").write_text(json.dumps(manifest))
    os.remove(store / manifest["shards"][2]["file"])


@pytest.mark.parametrize("damage,message", [
    (flip_a_bit, "shard soft_labels-00001-of-00009.tfrecord does not match its sha256 in "
                 "manifest.json; the file is corrupt (TFRecord CRC check fails after"),
    (truncate, "shard soft_labels-00001-of-00009.tfrecord does not match its sha256 in "
               "manifest.json; the file is corrupt (TFRecord CRC check fails after"),
    (unfinish, "is incomplete (8 of 9 shards written); run `distill label` again"),
], ids=["bit-flipped shard", "truncated shard", "incomplete store"])
def test_damaged_store(damage, message, prepared, small_task, tmp_path, capsys):
    run = fresh_copy(prepared, tmp_path)
    store = damaged_copy(prepared, tmp_path, damage)
    line = refused(student_from(run, small_task, store), message, capsys, run, store)
    assert f"Soft-label store {store}" in line


def test_relabeling_rewrites_a_corrupt_shard(prepared, small_task, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(prepared, run)
    flip_a_bit(run / "store")
    assert cli.main(["label", "configs/demo.yaml", "--output", str(run), *small_task["sets"]]) == 0
    for name in os.listdir(prepared / "store"):
        if not name.startswith("."):
            assert (run / "store" / name).read_bytes() == \
                (prepared / "store" / name).read_bytes(), name


def run_on(run, small_task, *sets):
    """`distill run` into `run` with a teacher to fine-tune (nothing supplied ready)."""
    return ["run", "configs/demo.yaml", "--output", run, *small_task["sets"],
            "--set", "teacher.finetuned=null", *[x for s in sets for x in ("--set", s)]]


@pytest.mark.parametrize("setting,message", [
    ("student.distill.learning_rate=-0.001",
     "student.distill.learning_rate: expected a value > 0; received -0.001"),
    ("teacher.train.warmup=1.0", "teacher.train.warmup: expected a value in [0, 1); received 1.0"),
    ("student.finetune.batch_size=0", "student.finetune.batch_size: expected a value >= 1"),
    ("data.max_transfer_examples=0", "data.max_transfer_examples: expected a value >= 1"),
    ("student.mlm.train.epochs=0", "student.mlm.train.epochs: expected a value > 0"),
    ("student.distill.temperature=nan", "student.distill.temperature: expected a value > 0; "
                                        "received nan"),
    ("student.stages=['finetune', 'distill']", "student.stages: expected a non-empty list from "
                                               "['distill', 'finetune'], in that order"),
    ("sweep.oracle=annealing", "sweep.oracle: expected one of ['random', 'bayesian', "
                               "'hyperband', 'grid']"),
    ("grid.transfer_sizes=[0]", "grid.transfer_sizes[0]: expected a positive number"),
], ids=lambda v: v.split("=")[0] if "=" in v else None)
def test_a_value_outside_its_range(setting, message, small_task, tmp_path, capsys):
    run = tmp_path / "run"
    refused(run_on(run, small_task, setting), message, capsys, tmp_path, seconds=10)
    assert not run.exists()


def test_a_transfer_file_that_copies_the_dev_set_is_refused_before_the_teacher(
        small_task, tmp_path, capsys):
    dev = pathlib.Path(small_task["glue_dir"], "dev.tsv").read_text().splitlines()[1:]
    copy = write(tmp_path / "dev_copy.txt", [line.rsplit("\t", 1)[0] for line in dev])
    run = tmp_path / "run"
    line = refused(run_on(run, small_task, f"data.transfer=['text:{copy}']"),
                   f"data.transfer 'text:{copy}': all {len(dev)} of its examples occur in the "
                   f"task's dev or test sets", capsys, tmp_path, seconds=10)
    assert "Nothing was written" in line and not run.exists()


def test_a_second_command_on_a_run_directory_in_use(small_task, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("earlier work")
    code = ("import sys, time; sys.argv = ['distill', 'run', 'configs/demo.yaml']\n"
            "from distill import rundir\n"
            f"with rundir.lock({str(run)!r}):\n    print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused(run_on(run, small_task), f"{run} is in use by process {holder.pid} "
                                         f"(`distill run configs/demo.yaml`)",
                capsys, run, seconds=10)
    finally:
        holder.kill()
        holder.wait()
