"""`distill run` checks every input before any work: seconds, exit 2, one line, nothing written."""
import time

import pytest

from pipelines import cli


def refused_at_once(argv, message, capsys, output):
    t0 = time.time()
    status = cli.main([str(a) for a in argv])
    seconds = time.time() - t0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("distill: error:")]
    assert status == 2 and len(lines) == 1 and message in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert not output.exists(), "the refused run wrote something"
    assert seconds < 10, f"took {seconds:.1f} s to refuse"


def run_with(small_task, output, *extra):
    """`distill run` on the small task, the teacher to be fine-tuned (so checks come first)."""
    return ["run", "configs/demo.yaml", "--output", output, *small_task["sets"],
            "--set", "teacher.finetuned=null", *extra]


CASES = {
    "missing transfer file": (["--set", "data.transfer=['labeled:train', 'text:{tmp}/nope.txt']"],
                              "Transfer text file {tmp}/nope.txt does not exist"),
    "dev set as transfer data": (["--set", "data.transfer=['labeled:validation']"],
                                 "'labeled:validation': validation is an evaluation split"),
    "missing teacher encoder": (["--set", "teacher.encoder={tmp}/no_teacher"],
                                "teacher.encoder: '{tmp}/no_teacher' is not a SavedModel"),
    "missing student vocab": (["--set", "student.preprocessor={tmp}/vocab.txt"],
                              "student.preprocessor: Preprocessor '{tmp}/vocab.txt'"),
    "misspelt loss": (["--set", "student.distill.loss=soft_xe"],
                      "student.distill.loss: expected one of ['soft_ce', 'kl', 'mse']; received 'soft_xe'"),
    "missing MLM text": (["--set", "student.mlm.data=['{tmp}/domain.txt']"],
                         "student.mlm.data: text file {tmp}/domain.txt does not exist"),
    "missing labeled data": (["--set", "data.labeled=glue_dir:{tmp}/SST-2"],
                             "GLUE file {tmp}/SST-2/train.tsv does not exist"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_before_the_teacher_trains(case, small_task, tmp_path, capsys):
    extra, message = CASES[case]
    extra = [e.format(tmp=tmp_path) for e in extra]
    output = tmp_path / "run"
    refused_at_once(run_with(small_task, output, *extra), message.format(tmp=tmp_path), capsys,
                    output)


def test_an_output_that_cannot_be_created_is_refused(small_task, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    output = blocker / "run"
    refused_at_once(run_with(small_task, output), f"Output directory {output} is not writable",
                    capsys, output)
    assert blocker.read_text() == "not a directory"
