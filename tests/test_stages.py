"""The stage table is the one list of stages: CLI, config, run directory and `distill run`
all read it, so a stage added there is everywhere."""
import dataclasses
import subprocess
import sys

import pytest

from conftest import ROOT
from distill import config as config_lib, rundir, stages
from distill.errors import UserError
from pipelines import cli, glue

EXTRA = stages.Stage("polish", "students.finetune:run", "polish the student", "student/polish",
                     trains=True, reads=("finetune",), student_stage=True)


@pytest.fixture
def with_extra_stage(monkeypatch):
    table = list(stages.STAGES)
    table.insert(table.index(stages.get("finetune")) + 1, EXTRA)
    monkeypatch.setattr(stages, "STAGES", tuple(table))


def _commands() -> dict:
    sub = next(a for a in cli._parser()._actions if a.dest == "command")
    return sub.choices


def test_a_stage_added_to_the_table_is_everywhere(with_extra_stage):
    assert "polish" in _commands()  # `distill polish CONFIG --output RUN`
    assert "polish" in stages.student_stages()
    cfg = config_lib.load(None, ["student.stages=['distill', 'finetune', 'polish']"])
    assert cfg.student.stages[-1] == "polish"
    run = rundir.RunDir("/runs/x", cfg)
    assert run.stage_dir("polish") == "/runs/x/student/polish"
    assert run.student_model == "/runs/x/student/polish/model"
    assert stages.recipe(cfg.student.stages, mlm=False) == [
        "teacher", "label", "distill", "finetune", "polish", "evaluate", "report"]
    assert glue.runner("polish") is glue.runner("finetune")


def test_the_table_drives_the_cli_config_and_run_directory():
    # `distill mlm` is the MLM stage's command of another form (--student, --data).
    assert {n for n in _commands() if n in stages.names()} - {"mlm"} == set(stages.commands())
    assert stages.student_stages() == ["distill", "finetune"]
    assert stages.followers("evaluate") == ["report"]
    run = rundir.RunDir("/r", config_lib.load(None, []))
    assert [run.stage_dir(s.name) for s in stages.STAGES if s.directory] == [
        "/r/teacher", "/r/store", "/r/student/mlm", "/r/student/distill", "/r/student/finetune"]
    assert stages.recipe(["distill"], mlm=True) == [
        "teacher", "label", "mlm", "distill", "evaluate", "report"]
    for stage in stages.STAGES:
        assert callable(glue.runner(stage.name))
        assert set(stage.reads) <= set(stages.names())


def test_student_stages_must_follow_the_table_order():
    with pytest.raises(UserError, match=r"student.stages: expected a non-empty list from "
                                        r"\['distill', 'finetune'\], in that order"):
        config_lib.load(None, ["student.stages=['finetune', 'distill']"])


def test_loading_a_config_imports_no_tensorflow():
    code = ("import sys; from distill import config; config.load('configs/glue/sst2.yaml'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'tensorflow_hub', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", out


def _numeric_fields(cls, prefix=""):
    for f in dataclasses.fields(cls):
        hint = config_lib._fields(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _numeric_fields(hint, f"{prefix}{f.name}.")
        elif hint in (int, float) or str(hint) in ("typing.Optional[int]", "typing.Optional[float]"):
            yield prefix + f.name, f


def _outside(allowed: config_lib.Range, is_int: bool):
    """A value just outside the range (ints: the next integer), or NaN for unbounded ranges."""
    if allowed.low is not None:
        return allowed.low - (1 if is_int else (0 if allowed.low_open else 1e-3))
    if allowed.high is not None:
        return allowed.high + (1 if is_int else 1e-3)
    return float("nan")


def test_every_numeric_setting_has_a_range_and_a_value_outside_it_is_refused():
    fields = list(_numeric_fields(config_lib.Config))
    assert len(fields) > 30  # Every schedule, the data, teacher, MLM, sweep, distribute fields.
    missing = [key for key, f in fields if "range" not in f.metadata]
    assert not missing, f"numeric settings without a range: {missing}"
    for key, f in fields:
        is_int = "int" in str(config_lib._fields(_owner(key))[key.rsplit(".", 1)[-1]])
        bad = _outside(f.metadata["range"], is_int)
        with pytest.raises(UserError, match=rf"^{key}: expected a value .*; received"):
            config_lib.load(None, [f"{key}={bad!r}"])


def _owner(key):
    cls = config_lib.Config
    for part in key.split(".")[:-1]:
        cls = config_lib._fields(cls)[part]
    return cls


def test_ranges_read_as_they_are_checked():
    assert str(config_lib.POSITIVE) == "> 0" and str(config_lib.FRACTION) == "in [0, 1)"
    assert 0 not in config_lib.POSITIVE and 1e-9 in config_lib.POSITIVE
    assert 1 not in config_lib.FRACTION and 0 in config_lib.FRACTION
    assert float("inf") not in config_lib.NON_NEGATIVE
    with pytest.raises(UserError, match=r"student.distill.learning_rate: expected a value > 0; "
                                        r"received -0.001"):
        config_lib.load(None, ["student.distill.learning_rate=-0.001"])


def test_the_names_the_config_accepts_are_the_ones_the_modules_implement():
    from distill import losses
    from pipelines import sweep

    assert set(losses.DISTILL_LOSSES) == set(config_lib.LOSSES)
    assert set(sweep.ORACLES) == set(config_lib.ORACLES)
