"""The GLUE task registry: one declarative entry per task.

Each entry says where a task's text and labels live, in TFDS (`glue/<task>`) and
in the original GLUE download (file names, header, columns), its label names
(none for the STS-B regression), its official metrics and the names of its
splits. Readers, metrics and the submission writer all read it from here.

    python -c "from distill import tasks; print(tasks.get('mnli'))"
"""
from __future__ import annotations

import dataclasses
import difflib
import os

from distill.errors import UserError


@dataclasses.dataclass(frozen=True)
class Columns:
    """Where the fields of one GLUE TSV file live: header names, or positions if headerless."""

    text_a: str | int
    text_b: str | int | None = None
    label: str | int | None = None
    id: str | int | None = None


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a task: its TFDS name, its GLUE file and its GLUE submission file."""

    name: str  # Our name, e.g. "validation_matched"; the same as TFDS's.
    tsv: str  # File name in the GLUE download, e.g. "dev_matched.tsv".
    columns: Columns
    has_header: bool = True
    labeled: bool = True
    submission: str | None = None  # GLUE leaderboard file name (test splits only).
    tfds: str | None = None  # "NAME:SPLIT" when it is another TFDS dataset (GLUE's AX).


@dataclasses.dataclass(frozen=True)
class Task:
    """A GLUE task. `label_names` is empty for regression (STS-B)."""

    name: str
    glue_name: str  # Directory name in the GLUE download, e.g. "SST-2".
    tfds_fields: tuple[str, ...]  # TFDS feature names of text_a (and text_b).
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]  # Official metrics; the GLUE score is their mean.
    splits: tuple[Split, ...]
    numeric_tsv_labels: bool = True  # TSV labels are "0"/"1", not label names.

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_outputs(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.tfds_fields) == 2

    @property
    def dev_splits(self) -> tuple[Split, ...]:
        return tuple(s for s in self.splits if s.name.startswith("validation"))

    @property
    def test_splits(self) -> tuple[Split, ...]:
        return tuple(s for s in self.splits if s.name.startswith("test"))

    @property
    def tfds_name(self) -> str:
        return f"glue/{self.name}"

    def split(self, name: str) -> Split:
        for s in self.splits:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.splits)
        raise UserError(f"Task {self.name} has no split {name!r}; expected one of: {known}.")


def _standard(a, b=None, label="label", test_a=None, test_b=None, header=True):
    """train/dev/test splits for a task whose files are train.tsv, dev.tsv, test.tsv."""
    labeled = Columns(text_a=a, text_b=b, label=label)
    test = Columns(text_a=test_a or a, text_b=test_b or b, id="index")
    return (
        Split("train", "train.tsv", labeled, has_header=header),
        Split("validation", "dev.tsv", labeled, has_header=header),
        Split("test", "test.tsv", test, labeled=False),
    )


def _with_submission(splits, name):
    return tuple(
        dataclasses.replace(s, submission=f"{name}.tsv") if s.name == "test" else s for s in splits
    )


_MNLI_LABELED = Columns(text_a="sentence1", text_b="sentence2", label="gold_label")
_MNLI_TEST = Columns(text_a="sentence1", text_b="sentence2", id="index")

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        # CoLA's train/dev files have no header: source, label, original mark, sentence.
        Task("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), ("matthews_corrcoef",),
             _with_submission(_standard(a=3, label=1, test_a="sentence", header=False), "CoLA")),
        Task("sst2", "SST-2", ("sentence",), ("negative", "positive"), ("accuracy",),
             _with_submission(_standard(a="sentence"), "SST-2")),
        # MRPC: "Quality #1 ID #2 ID #1 String #2 String".
        Task("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
             ("f1", "accuracy"),
             _with_submission(_standard(a="#1 String", b="#2 String", label="Quality"), "MRPC")),
        Task("stsb", "STS-B", ("sentence1", "sentence2"), (), ("pearson", "spearman"),
             _with_submission(_standard(a="sentence1", b="sentence2", label="score"), "STS-B")),
        Task("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"),
             ("f1", "accuracy"),
             (Split("train", "train.tsv", Columns("question1", "question2", "is_duplicate")),
              Split("validation", "dev.tsv", Columns("question1", "question2", "is_duplicate")),
              Split("test", "test.tsv", Columns("question1", "question2", id="id"), labeled=False,
                    submission="QQP.tsv"))),
        Task("mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
             ("accuracy",),
             (Split("train", "train.tsv", _MNLI_LABELED),
              Split("validation_matched", "dev_matched.tsv", _MNLI_LABELED),
              Split("validation_mismatched", "dev_mismatched.tsv", _MNLI_LABELED),
              Split("test_matched", "test_matched.tsv", _MNLI_TEST, labeled=False,
                    submission="MNLI-m.tsv"),
              Split("test_mismatched", "test_mismatched.tsv", _MNLI_TEST, labeled=False,
                    submission="MNLI-mm.tsv"),
              # GLUE's diagnostic set, predicted by the MNLI model (the download's
              # diagnostic/diagnostic.tsv, beside the MNLI directory).
              Split("test_ax", os.path.join("..", "diagnostic", "diagnostic.tsv"),
                    Columns("sentence1", "sentence2", id="index"), labeled=False,
                    submission="AX.tsv", tfds="glue/ax:test")),
             numeric_tsv_labels=False),
        Task("qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment"),
             ("accuracy",), _with_submission(_standard(a="question", b="sentence"), "QNLI"),
             numeric_tsv_labels=False),
        Task("rte", "RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment"),
             ("accuracy",), _with_submission(_standard(a="sentence1", b="sentence2"), "RTE"),
             numeric_tsv_labels=False),
        Task("wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
             ("accuracy",), _with_submission(_standard(a="sentence1", b="sentence2"), "WNLI")),
    ]
}


def get(name: str) -> Task:
    """Returns the task called `name` (case-insensitive; "SST-2" and "sst2" both work).

    Raises:
      UserError: if no such task exists; the message suggests the closest name.
    """
    key = name.lower().replace("-", "")
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, TASKS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UserError(f"Unknown task {name!r}; expected one of: {', '.join(TASKS)}.{hint}")
