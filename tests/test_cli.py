"""The command line: bad input is one line on stderr, exit status 2, no traceback, nothing lost."""
from conftest import assert_clean_error, run_cli as distill_cli, write


def test_missing_config_file(tmp_path):
    assert_clean_error(distill_cli("run", str(tmp_path / "nope.yaml"), "--output", str(tmp_path)),
                       "nope.yaml does not exist")


def test_unknown_task_and_key(tmp_path):
    assert_clean_error(distill_cli("run", "configs/glue/sst2.yaml", "--output", str(tmp_path),
                                   "--set", "task=mnli2"), "Unknown task 'mnli2'")
    assert_clean_error(distill_cli("run", "configs/glue/sst2.yaml", "--output", str(tmp_path),
                                   "--set", "studnt.distill.alpha=1"),
                       "Did you mean 'student.distill.alpha'")


def test_malformed_row_stops_before_anything_is_lost(tmp_path, tiny_encoder, vocab_file):
    glue_dir = tmp_path / "SST-2"
    write(glue_dir / "train.tsv", ["sentence\tlabel", "good movie\t1", "bad movie\tmaybe"])
    run_dir = tmp_path / "run"
    (run_dir / "teacher").mkdir(parents=True)
    (run_dir / "teacher" / "keep.txt").write_text("earlier work")
    result = distill_cli("teacher", "configs/demo.yaml", "--output", str(run_dir),
                         "--set", f"data.labeled=glue_dir:{glue_dir}",
                         "--set", f"teacher.encoder={tiny_encoder}",
                         "--set", f"teacher.preprocessor={vocab_file}")
    assert_clean_error(result, f"{glue_dir}/train.tsv:3: label 'maybe' is outside the label set")
    assert (run_dir / "teacher" / "keep.txt").read_text() == "earlier work"


def test_unloadable_handle(tmp_path, vocab_file):
    glue_dir = tmp_path / "SST-2"
    write(glue_dir / "train.tsv", ["sentence\tlabel", "good movie\t1"])
    result = distill_cli("teacher", "configs/demo.yaml", "--output", str(tmp_path / "run"),
                         "--set", f"data.labeled=glue_dir:{glue_dir}",
                         "--set", f"teacher.encoder={tmp_path}/no_encoder",
                         "--set", f"teacher.preprocessor={vocab_file}")
    assert_clean_error(result, "no_encoder': no such directory")


def test_label_before_teacher_says_what_to_run(tmp_path, small_task):
    run = tmp_path / "run"
    result = distill_cli("label", "configs/demo.yaml", "--output", str(run), *small_task["sets"])
    assert_clean_error(result, f"{run}/teacher is not complete; run the teacher stage first")
    assert not (run / "store").exists()


def test_an_empty_transfer_set_is_refused(tmp_path):
    result = distill_cli("label", "configs/demo.yaml", "--output", str(tmp_path / "run"),
                         "--set", "data.transfer=[]")
    assert_clean_error(result, "data.transfer: the transfer set is empty")


def test_renamed_command_names_the_new_one(tmp_path):
    result = distill_cli("train", "configs/demo.yaml", "--output", str(tmp_path / "run"))
    assert_clean_error(result, "the command 'train' was renamed; use `distill distill`")
