import pytest

from distill import tasks
from distill.errors import UserError


def test_registry_holds_the_nine_glue_tasks():
    assert sorted(tasks.TASKS) == sorted(
        ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"])


@pytest.mark.parametrize("name,outputs,metrics", [
    ("cola", 2, ("matthews_corrcoef",)), ("stsb", 1, ("pearson", "spearman")),
    ("mrpc", 2, ("f1", "accuracy")), ("qqp", 2, ("f1", "accuracy")), ("mnli", 3, ("accuracy",)),
])
def test_outputs_and_official_metrics(name, outputs, metrics):
    task = tasks.get(name)
    assert task.num_outputs == outputs
    assert task.metrics == metrics


def test_mnli_has_matched_and_mismatched_dev_and_test():
    mnli = tasks.get("MNLI")
    assert [s.name for s in mnli.dev_splits] == ["validation_matched", "validation_mismatched"]
    assert [s.tsv for s in mnli.dev_splits] == ["dev_matched.tsv", "dev_mismatched.tsv"]
    assert [s.submission for s in mnli.test_splits] == ["MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"]


def test_glue_names_and_hyphens_are_accepted():
    assert tasks.get("SST-2") is tasks.get("sst2")
    assert tasks.get("STS-B").is_regression


def test_unknown_task_suggests_the_closest():
    with pytest.raises(UserError, match="Did you mean 'qnli'"):
        tasks.get("qnl")
