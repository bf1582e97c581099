"""The table of the recipe's stages: the one place that says which stages exist.

Each entry names its stage, the function that runs it, its CLI help, its directory in
the run directory, whether it trains under the `tf.distribute` strategy and which
stages' artifacts it reads. The config's `student.stages`, the run directory's stage
directories, `distill run`'s order and the CLI's stage commands are all read from
here: adding a stage is one entry. The table names each stage's function as
"module:function" (big_vision names its models the same way), so this module imports
nothing and the layers below `pipelines/` never import the stages above them.

    python -c "from distill import stages; print([s.name for s in stages.STAGES])"
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str  # The stage's name: in progress lines, `inputs.json` and its CLI command.
    runs: str  # "module:function" taking (cfg, run_dir, **kwargs) (pipelines/glue.py runs it).
    # The help of its `distill NAME CONFIG --output RUN` command; None: no command of its own
    # (it runs with the command of the stage it reads, or has a command of another form).
    command: str | None
    directory: str | None  # Below RUN ("store": the store, which `data.store` may redirect).
    trains: bool  # Runs under the tf.distribute strategy of `distribute.strategy`.
    reads: tuple[str, ...] = ()  # Stages whose artifacts it reads, when they ran.
    student_stage: bool = False  # May be listed in `student.stages`.


STAGES = (
    Stage("teacher", "teachers.finetune:run", "fine-tune the teacher on the labeled data",
          "teacher", trains=True),
    Stage("label", "teachers.label:run", "label the transfer data into the soft-label store",
          "store", trains=False, reads=("teacher",)),
    # Continued MLM pre-training of the student, when `student.mlm.data` is set; its own
    # command is `distill mlm --student HANDLE --data TEXT...`.
    Stage("mlm", "students.mlm:run", None, "student/mlm", trains=True),
    Stage("distill", "students.distill:run", "distill the student from the store",
          "student/distill", trains=True, reads=("label", "mlm"), student_stage=True),
    Stage("finetune", "students.finetune:run", "fine-tune the student on the labeled data",
          "student/finetune", trains=True, reads=("distill", "mlm"), student_stage=True),
    Stage("evaluate", "students.evaluate:run", "dev metrics and GLUE test predictions", None,
          trains=False, reads=("teacher", "mlm", "distill", "finetune")),
    Stage("report", "students.report:run", None, None, trains=False, reads=("evaluate",)),
)


def get(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ValueError(f"unknown stage {name!r}; expected one of {names()}")


def names() -> list[str]:
    return [s.name for s in STAGES]


def student_stages() -> list[str]:
    """What `student.stages` may list, in the order they run."""
    return [s.name for s in STAGES if s.student_stage]


def commands() -> dict[str, str]:
    """Stage name -> CLI help, for the stages with a `distill NAME CONFIG` command."""
    return {s.name: s.command for s in STAGES if s.command}


def followers(name: str) -> list[str]:
    """The stages without a command of their own that read `name`: its command runs them
    after it (`distill evaluate` writes the report)."""
    return [s.name for s in STAGES if s.command is None and name in s.reads]


def recipe(student_stages_: list[str], mlm: bool) -> list[str]:
    """The stages `distill run` runs, in table order: the teacher's, the MLM stage when
    `student.mlm.data` is set, the configured student stages, then the rest."""
    chosen = []
    for stage in STAGES:
        if stage.student_stage and stage.name not in student_stages_:
            continue
        if stage.name == "mlm" and not mlm:
            continue
        chosen.append(stage.name)
    return chosen
