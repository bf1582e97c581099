"""Config: defaults -> YAML -> overrides, with unknown keys and wrong types refused."""
import glob
import os

import pytest

from distill import config
from distill.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_overrides_are_typed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: rte\nstudent:\n  distill: {learning_rate: 2e-5, epochs: 2}\n")
    cfg = config.load(str(path), ["student.distill.alpha=0.5", "student.stages=['distill', 'finetune']",
                                  "teacher.encoder=/some/path", "data.max_train_examples=100"])
    assert cfg.task == "rte"
    assert cfg.student.distill.learning_rate == 2e-5  # YAML's "2e-5" string became a float
    assert cfg.student.distill.epochs == 2.0
    assert cfg.student.distill.alpha == 0.5
    assert cfg.student.stages == ["distill", "finetune"]
    assert cfg.teacher.encoder == "/some/path"
    assert cfg.data.max_train_examples == 100


@pytest.mark.parametrize("override,message", [
    ("student.distill.temprature=2",
     r"'student.distill.temprature' does not exist. Did you mean 'student.distill.temperature'"),
    ("student.distill.alpha=high", r"student.distill.alpha: expected float; received 'high'"),
    ("student.distill.alpha=1.5", r"student.distill.alpha: expected a value in \[0, 1\]"),
    ("student.distill.loss=soft_xe", r"student.distill.loss: expected one of \['soft_ce', 'kl', 'mse'\]; received 'soft_xe'"),
    ("student.alpha=0.5", r"'student.alpha' was renamed; use 'student.distill.alpha'"),
    ("student.loss=kl", r"'student.loss' was renamed; use 'student.distill.loss'"),
    ("data.soft_labels=/s", r"'data.soft_labels' was renamed; use 'data.store'"),
    ("data.validation_fraction=0.1", r"'data.validation_fraction' was renamed; use "
                                     r"'data.heldout_fraction'"),
    ("student.init=zeros", r"student.init: expected one of \['pretrained', 'random'\]"),
    ("student.stages=['distil']", r"student.stages"),
    ("task=stsb", r"student.distill.loss: stsb is a regression task"),
    ("seed", r"expected key=value"),
    ("teacher.label_batch_size=-1", r"teacher.label_batch_size: expected a value >= 0; received -1"),
])
def test_bad_overrides(override, message):
    with pytest.raises(UserError, match=message):
        config.load(None, [override])


def test_bad_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config.load(str(path))
    with pytest.raises(UserError, match="does not exist"):
        config.load(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "glue", "*.yaml"))))
def test_glue_configs_load_with_real_handles(path):
    cfg = config.load(path)
    assert os.path.basename(path) == f"{cfg.task}.yaml"
    assert cfg.teacher.encoder.endswith("bert_en_uncased_L-24_H-1024_A-16/4")
    assert "small_bert/bert_en_uncased_L-12_H-512_A-8" in cfg.student.encoder
    assert cfg.data.labeled == "tfds"


def test_nine_glue_configs_exist():
    assert len(glob.glob(os.path.join(ROOT, "configs", "glue", "*.yaml"))) == 9


def test_runlocal_shrinks_any_config():
    cfg = config.load(None, ["runlocal=True", "data.max_eval_examples=10"])
    assert cfg.data.max_train_examples == 64 and cfg.data.max_eval_examples == 10
    assert cfg.teacher.train.epochs == cfg.student.distill.epochs == 1
    assert cfg.teacher.shard_size == 32
    assert config.load(None).data.max_train_examples is None  # Off by default.


def test_renamed_keys_are_refused_in_yaml_too(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("student:\n  temperature: 2.0\n")
    with pytest.raises(UserError, match="'student.temperature' was renamed; use "
                                        "'student.distill.temperature'"):
        config.load(str(path))


def test_task_configs_state_only_what_differs_from_the_defaults():
    """One place states each default: a task YAML that restates one would hide a change."""
    import yaml

    defaults = config.to_dict(config.Config())

    def restated(values, base, prefix=""):
        for key, value in values.items():
            if isinstance(value, dict) and base[key]:  # A section (not a user's mapping).
                yield from restated(value, base[key], f"{prefix}{key}.")
            elif value == base[key] and key != "task":
                yield prefix + key

    for path in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True):
        with open(path) as f:
            values = yaml.safe_load(f) or {}
        assert not list(restated(values, defaults)), path


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"),
                                             recursive=True)))
def test_every_config_runs_offline_as_it_is_or_says_what_it_needs(path):
    first = open(path).readline()
    assert first.startswith(("# Runs offline as it is", "# Needs ")), (path, first)
    if first.startswith("# Runs offline"):  # Its demo assets fill every placeholder.
        cfg = config.load(path)
        assert "demo" in (cfg.grid.assets, cfg.sweep.assets), path
