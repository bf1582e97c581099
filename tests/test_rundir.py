"""The run directory's owner: paths, the stage skeleton's skip / resume / refusal, atomic writes."""
import json
import os
import pathlib

import pytest

from distill import config, rundir, tasks
from distill.errors import UserError
from students import model as student_model


def test_paths_follow_the_config(tmp_path):
    cfg = config.load(None, ["student.stages=['distill', 'finetune']"])
    paths = rundir.RunDir(str(tmp_path), cfg)
    assert paths.teacher_model == str(tmp_path / "teacher" / "model")
    assert paths.store == str(tmp_path / "store")
    assert paths.student_model == str(tmp_path / "student" / "finetune" / "model")
    assert paths.weights("distill") == str(tmp_path / "student" / "distill" / "weights")
    assert paths.predictions("student", "validation") == str(
        tmp_path / "predictions" / "student-validation.npz")
    shared = config.load(None, ["teacher.finetuned=/t/model", "data.store=/s/store",
                                "student.stages=['distill']"])
    paths = rundir.RunDir(str(tmp_path), shared)
    assert (paths.teacher_model, paths.store) == ("/t/model", "/s/store")
    assert paths.student_model == str(tmp_path / "student" / "distill" / "model")


def test_a_done_stage_is_skipped_and_an_unfinished_one_resumes(tmp_path):
    stage_dir, inputs, calls = str(tmp_path / "stage"), {"lr": 0.1, "data": {"n": 5}}, []

    def work():
        calls.append(len(calls))
        return {"steps": 7}

    first = rundir.stage("demo", stage_dir, inputs, work)
    again = rundir.stage("demo", stage_dir, inputs, work)
    assert calls == [0] and first == again
    assert again == {"fingerprint": rundir.fingerprint(inputs), "summary": {"steps": 7}}
    # A stage that stopped midway (no done.json) runs its work again, which resumes.
    os.remove(os.path.join(stage_dir, rundir.DONE))
    rundir.stage("demo", stage_dir, inputs, work)
    assert calls == [0, 1]


def test_a_finished_stage_keeps_no_checkpoint_to_resume_from(tmp_path):
    stage_dir = tmp_path / "stage"
    train = stage_dir / rundir.TRAIN
    kept = [stage_dir / "model" / "saved_model.pb", train / "epochs.json",
            train / "tensorboard" / "events.out"]

    def work(fail: bool):
        for path in [*kept, pathlib.Path(rundir.checkpoints(str(train))) / "ckpt-7.index"]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
        if fail:
            raise RuntimeError("killed midway")
        return {"steps": 7}

    with pytest.raises(RuntimeError):  # Unfinished: the checkpoint is what it resumes from.
        rundir.stage("demo", str(stage_dir), {"lr": 0.1}, lambda: work(fail=True))
    assert os.listdir(rundir.checkpoints(str(train))) == ["ckpt-7.index"]
    rundir.stage("demo", str(stage_dir), {"lr": 0.1}, lambda: work(fail=False))
    assert not os.path.exists(rundir.checkpoints(str(train)))
    assert all(path.read_text() == "x" for path in kept)
    assert (stage_dir / rundir.DONE).is_file()


def test_a_stage_made_from_other_inputs_is_refused_and_left_alone(tmp_path):
    stage_dir = tmp_path / "stage"
    rundir.begin(str(stage_dir), {"lr": 0.1, "data": {"n": 5}})
    (stage_dir / "checkpoint").write_text("progress")
    before = {p.name: p.read_text() for p in stage_dir.iterdir()}
    with pytest.raises(UserError, match=r"made from other inputs \(data.n: 5 there, 6 now\); "
                                        r"nothing was changed"):
        rundir.begin(str(stage_dir), {"lr": 0.1, "data": {"n": 6}})
    assert {p.name: p.read_text() for p in stage_dir.iterdir()} == before


def test_a_stage_refused_before_any_progress_starts_afresh(tmp_path):
    stage_dir = str(tmp_path / "stage")
    rundir.begin(stage_dir, {"encoder": "/typo"})  # Then refused for its bad handle.
    assert rundir.begin(stage_dir, {"encoder": "/right"}) is None
    with open(os.path.join(stage_dir, rundir.INPUTS)) as f:
        assert json.load(f) == {"encoder": "/right"}


def test_an_unfinished_upstream_stage_says_what_to_run(tmp_path):
    with pytest.raises(UserError, match="teacher is not complete; run the teacher stage first"):
        rundir.done_record(str(tmp_path / "teacher"))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    rundir.write_json_atomic(str(path), {"a": 1})

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError, match=f"Could not write {path}: No space left on device"):
        rundir.write_file_atomic(str(path), fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_each_student_stage_builds_with_its_own_dropout(tiny_encoder):
    cfg = config.load(None, [f"student.encoder={tiny_encoder}", "student.distill.dropout=0.0",
                             "student.finetune.dropout=0.3"])
    task = tasks.get("sst2")
    rates = {stage: student_model.build(cfg, task, stage).get_layer("dropout").rate
             for stage in ("distill", "finetune")}
    assert rates == {"distill": 0.0, "finetune": 0.3}
