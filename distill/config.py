"""Typed run configuration: defaults -> YAML -> `--set key=value` overrides -> validate.

Every field is documented here, with its default and, for numbers, its range, each
stated once; `configs/*.yaml` set only what differs. An unknown key is an error that
suggests the closest valid name; a value outside its range is refused with the key, the
range and the value. This module is a leaf: it checks names and ranges declared here and
imports no TensorFlow, so reading a config is instant. The resolved config of the last
command that finished is saved as `config.yaml` in the run directory.

    distill run configs/glue/sst2.yaml --output runs/sst2 --set student.distill.alpha=0.5
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import math
import types
import typing

import yaml

from distill import stages as stages_lib, tasks as tasks_lib, transfer_spec
from distill.errors import UserError

HUB = "https://tfhub.dev/tensorflow"
PREPROCESSOR = f"{HUB}/bert_en_uncased_preprocess/3"
BERT_LARGE = f"{HUB}/bert_en_uncased_L-24_H-1024_A-16/4"
SEQ_LENGTH = 128  # Word pieces per example, BERT's fine-tuning default (and the hub preprocessor's).
SORT_WINDOW = 16  # Batches per length-sorted window, in training and labeling.
# [CLS] and one [SEP] per segment, plus a word piece for each segment.
MIN_SEQ_LENGTH = {False: 3, True: 5}  # Keyed by "is a pair task".
ENSEMBLE_MEMBER_KEYS = ("encoder", "finetuned", "seed", "train")
# Names the config selects by, declared here so that the config need not import the modules
# that implement them (tests/test_stages.py checks the losses and oracles against theirs).
LOSSES = ("soft_ce", "kl", "mse")  # distill/losses.py
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")  # distill/distribute.py
PRECISIONS = ("float32", "bfloat16")
INITS = ("pretrained", "random")
COMBINES = ("log_probs", "logits")  # distill/ensemble.py
ORACLES = ("random", "bayesian", "hyperband", "grid")  # pipelines/sweep.py
IMPORT_KINDS = ("logits", "probabilities", "log_probs", "top_logprobs")  # teachers/imported.py


def small_bert(layers: int, hidden: int, version: int = 2) -> str:
    """The TF Hub handle of one of the 24 small BERTs (students/presets.py lists them)."""
    return f"{HUB}/small_bert/bert_en_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}/{version}"


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: finite, between `low` and `high` (None: no
    bound), each end included unless marked open."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


POSITIVE = Range(0, low_open=True)
AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, high_open=True)  # [0, 1)
UNIT = Range(0, 1)  # [0, 1]


def ranged(default, allowed: Range):
    """A numeric field with its default and its range, declared together."""
    return dataclasses.field(default=default, metadata={"range": allowed})


@dataclasses.dataclass
class Schedule:
    """The optimisation hyperparameters of one training stage (BERT's defaults)."""

    epochs: float = ranged(3.0, POSITIVE)
    batch_size: int = ranged(32, AT_LEAST_ONE)
    learning_rate: float = ranged(5e-5, POSITIVE)
    warmup: float = ranged(0.1, FRACTION)  # Fraction of all steps spent warming up linearly.
    weight_decay: float = ranged(0.01, NON_NEGATIVE)
    # Clip the gradient to this global norm, as BERT's optimizer does; 0: off.
    clip_norm: float = ranged(1.0, NON_NEGATIVE)
    dropout: float = ranged(0.1, FRACTION)  # Of the classifier built for this stage (models.build).
    # Steps; a checkpoint is also written after each epoch.
    checkpoint_every: int = ranged(500, AT_LEAST_ONE)
    jit_compile: bool = False  # Compile each training step with XLA (one compilation per shape).
    # Draw batches from windows of this many batches sorted by length, in shuffled order: less
    # padding, 1.6-1.8x faster, and no accuracy lost over three seeds on real SST-2
    # (benchmarks/RESULTS.md). 1 = plain random batches.
    sort_window: int = ranged(SORT_WINDOW, AT_LEAST_ONE)


@dataclasses.dataclass
class DataConfig:
    labeled: str = "tfds"  # Labeled data D_L: "tfds[:DATA_DIR]" or "glue_dir:PATH".
    # Transfer data D_T, read in this order: "labeled:train" (D_L's text, gold labels kept),
    # "text:PATH", "tfds:NAME:SPLIT:FIELDS", "recipe:nli_star" or "recipe:movie_reviews_star",
    # or a mapping {source, sample, max_examples, seed, sentences}: see distill/transfer.py.
    transfer: list = dataclasses.field(default_factory=lambda: ["labeled:train"])
    # Keep the first N of D_L's train split, of each transfer entry, of each dev/test split.
    max_train_examples: typing.Optional[int] = ranged(None, AT_LEAST_ONE)
    max_transfer_examples: typing.Optional[int] = ranged(None, AT_LEAST_ONE)
    max_eval_examples: typing.Optional[int] = ranged(None, AT_LEAST_ONE)
    # Reuse a complete soft-label store (e.g. another run's RUN/store) instead of
    # labeling: a sweep of many students costs one teacher pass.
    store: typing.Optional[str] = None
    # Train students on a subsample of this many store examples, drawn with `seed`
    # (no relabeling): the paper's transfer-set-size experiment (`grid.transfer_sizes`).
    store_sample: typing.Optional[int] = ranged(None, AT_LEAST_ONE)
    # Drop transfer examples whose text occurs in the task's dev or test sets, and refuse
    # those sets as transfer data (distill/transfer.py). false: the report says so.
    contamination_guard: bool = True
    # Carve a heldout split out of D_L's train split (seeded, fixed): teacher and
    # students then train on the rest, and sweeps select on it, never on dev.
    heldout_fraction: float = ranged(0.0, FRACTION)
    heldout_seed: int = ranged(0, NON_NEGATIVE)


@dataclasses.dataclass
class TeacherConfig:
    encoder: str = BERT_LARGE  # TF Hub handle or local SavedModel of the teacher's encoder.
    preprocessor: str = PREPROCESSOR  # Hub preprocessor handle/dir, or a WordPiece vocab.txt.
    lower_case: bool = True  # Only used when `preprocessor` is a vocab.txt.
    seq_length: int = ranged(SEQ_LENGTH, Range(MIN_SEQ_LENGTH[False]))
    finetuned: typing.Optional[str] = None  # A classifier SavedModel trained elsewhere: skips fine-tuning.
    train: Schedule = dataclasses.field(
        default_factory=lambda: Schedule(learning_rate=2e-5))
    # Fine-tune this many teachers (seeds seed, seed+1, ...) and keep the one that scores
    # best on the gate's split (the heldout split carved from train): BERT-Large sometimes
    # fails to train on small tasks, and BERT's authors restart it.
    restarts: int = ranged(1, AT_LEAST_ONE)
    # A teacher ensemble (teachers/ensemble.py): one mapping per member, changing some of
    # ENSEMBLE_MEMBER_KEYS for it, e.g. [{seed: 1}, {seed: 2}] or [{encoder: ...}, {}];
    # members share the preprocessor and seq_length. Empty: one teacher.
    ensemble: list = dataclasses.field(default_factory=list)
    # How the members' outputs become the store's logits: "log_probs", the weighted mean of
    # their log-softmax (a normalised geometric mean of their distributions), or "logits",
    # the weighted mean of their logits (regression: the weighted mean of outputs).
    combine: str = "log_probs"
    weights: list = dataclasses.field(default_factory=list)  # One per member; empty = equal.
    member_logits: bool = False  # Also store every member's logits (feature "member_logits").
    # Batch size when labeling D_T; 0: `label.default_batch_size()` (32 on CPUs, 256 on GPUs).
    label_batch_size: int = ranged(0, NON_NEGATIVE)
    # Labeling refuses a teacher whose score does not beat the majority-class (STS-B: mean)
    # baseline by this much on the heldout split (teachers/gate.py).
    min_margin: float = ranged(0.0, Range(-1, 1))  # Scores lie in [-1, 1].
    shard_size: int = ranged(10_000, AT_LEAST_ONE)  # Records per soft-label shard.


@dataclasses.dataclass
class MLMConfig:
    """Optional continued MLM pre-training of the student before distillation (students/mlm.py)."""

    data: list = dataclasses.field(default_factory=list)  # Text files; empty = no MLM stage.
    seq_length: int = ranged(SEQ_LENGTH, Range(MIN_SEQ_LENGTH[False]))
    max_predictions: int = ranged(20, AT_LEAST_ONE)  # Masked positions per sequence at most.
    # Fraction of the text kept aside to measure the MLM loss.
    heldout: float = ranged(0.05, Range(0, 1, low_open=True, high_open=True))
    train: Schedule = dataclasses.field(
        default_factory=lambda: Schedule(epochs=1, learning_rate=1e-4))


@dataclasses.dataclass
class DistillConfig(Schedule):
    """The distillation stage: its loss (Turc et al. 2019, Sec. 2, Eq. 1) and its schedule."""

    loss: str = "soft_ce"  # distill.losses: soft_ce | kl | mse (STS-B uses mse).
    # T: both distributions are softened by it; T² scales the loss.
    temperature: float = ranged(1.0, POSITIVE)
    alpha: float = ranged(0.0, UNIT)  # Weight of the hard-label loss where the store has gold labels.


@dataclasses.dataclass
class StudentConfig:
    encoder: str = small_bert(12, 512)  # Pre-trained compact student (any of the 24 small BERTs).
    preprocessor: str = PREPROCESSOR
    lower_case: bool = True
    seq_length: int = ranged(SEQ_LENGTH, Range(MIN_SEQ_LENGTH[False]))
    init: str = "pretrained"  # "pretrained" (the paper's PD) or "random" (plain distillation).
    # Some of stages.student_stages() (distill, finetune), in that order.
    stages: list = dataclasses.field(default_factory=lambda: ["distill"])
    distill: DistillConfig = dataclasses.field(
        default_factory=lambda: DistillConfig(learning_rate=1e-4))
    finetune: Schedule = dataclasses.field(default_factory=Schedule)
    mlm: MLMConfig = dataclasses.field(default_factory=MLMConfig)


@dataclasses.dataclass
class SweepConfig:
    """`distill sweep` (pipelines/sweep.py): keras-tuner over the student stages."""

    oracle: str = "random"  # random | bayesian | hyperband | grid
    max_trials: int = ranged(10, AT_LEAST_ONE)
    # Config key -> a list of choices, or {min, max[, log]} for a number range.
    space: dict = dataclasses.field(default_factory=dict)
    # "small_bert_grid": batch size {8, 16, 32, 64, 128} x learning rate {3e-4, 1e-4,
    # 5e-5, 3e-5}, 4 epochs, as the small-BERT release recommends.
    preset: typing.Optional[str] = None
    max_epochs: int = ranged(4, AT_LEAST_ONE)  # Hyperband's largest budget, in distillation epochs.
    # "demo": build the demo's data and encoders under OUTPUT/assets and fill the keys the
    # config leaves SET_BY_DEMO (configs/sweeps/demo.yaml runs offline as it is).
    assets: typing.Optional[str] = None


@dataclasses.dataclass
class GridConfig:
    """`distill reproduce` (pipelines/paper.py): students x methods x tasks x seeds."""

    tasks: list = dataclasses.field(default_factory=lambda: ["sst2"])
    task_config: str = "configs/glue/{task}.yaml"  # Base config of each task's cells.
    overrides: list = dataclasses.field(default_factory=list)  # key=value, for every cell.
    # "small_bert_24", or a list of {name, encoder[, truncated_encoder]}.
    students: typing.Any = "small_bert_24"
    methods: list = dataclasses.field(default_factory=lambda: ["PF", "D", "PD", "PDF"])
    seeds: list = dataclasses.field(default_factory=lambda: [0])
    assets: typing.Optional[str] = None  # "demo": build the demo's data and encoders first.
    # Each cell runs the task config's `sweep` (space or preset, oracle, max_trials) and
    # keeps the trial that scores best on the split carved from train (pipelines/paper.py).
    search: bool = False
    # Also distil on seeded subsamples of the store of these sizes (the whole store is
    # always a point): the paper's transfer-set-size figure.
    transfer_sizes: list = dataclasses.field(default_factory=list)
    # After a cell's search, train the selected setting again on all of D_L's train (the
    # carved heldout split included), as the small-BERT release did; the cell's dev score
    # is that model's. false: the selected trial's own (trained on the rest of train).
    refit: bool = True


@dataclasses.dataclass
class ImportConfig:
    """`distill import-labels` (teachers/imported.py): a store from another teacher's outputs."""

    # What each row of the labels file holds, by label name: "logits", "probabilities",
    # "log_probs", or "top_logprobs" (the top-k log-probabilities of label *words*, which
    # `label_words` maps to the task's labels, as LLM serving stacks return them).
    kind: str = "logits"
    # The temperature the teacher's outputs were produced at; the store's logits are then
    # brought to T=1 (DESIGN.md's contract), so the distillation temperature stays a choice.
    temperature: float = ranged(1.0, POSITIVE)
    teacher: str = ""  # The teacher's name as given (a model, an API), recorded in the manifest.
    label_words: dict = dataclasses.field(default_factory=dict)  # "top_logprobs": word -> label.
    tolerance: float = ranged(1e-3, Range(0, 0.5, low_open=True))  # Probabilities' sum vs 1.


@dataclasses.dataclass
class DistributeConfig:
    """The tf.distribute strategy of training and labeling (distill/distribute.py)."""

    strategy: str = "default"  # default | mirrored | multi_worker (TF_CONFIG) | tpu
    tpu: str = ""  # The TPU's name or grpc:// address for strategy "tpu" ("" = from the environment).
    # Split the host CPU into N logical devices, so that "mirrored" runs without GPUs
    # (tests, trying a config out); 0 = leave the devices as they are.
    cpu_devices: int = ranged(0, NON_NEGATIVE)


@dataclasses.dataclass
class Config:
    task: str = "sst2"  # One of distill.tasks.TASKS.
    seed: int = ranged(0, NON_NEGATIVE)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    student: StudentConfig = dataclasses.field(default_factory=StudentConfig)
    eval_batch_size: int = ranged(128, AT_LEAST_ONE)
    # Turns any config into a one-minute run of the same code path: at most 64 examples
    # per split, one epoch per stage (MLM included), shards of 32 (applied when the config is loaded).
    runlocal: bool = False
    # tf.config.experimental.enable_op_determinism() and fixed seeds: a rerun, or a run
    # resumed after a crash, ends with the same weights as an uninterrupted one (slower).
    deterministic: bool = False
    # "bfloat16": oneDNN's graph rewrite runs matmuls and other safe ops in bfloat16 on CPUs
    # that have it (AVX512-BF16, AMX); variables and losses stay float32.
    precision: str = "float32"
    # true: an encoder whose weights map (this project's exports, TF Hub's Model Garden BERTs,
    # converted checkpoints) runs as this project's own Keras encoder, checked against the
    # SavedModel when loaded (faster; `precision` reaches every op); false: through
    # hub.KerasLayer's fixed graph, as before.
    native_encoder: bool = True
    # true: the native encoder recomputes each Transformer block's activations in the backward
    # pass instead of keeping them (tf.recompute_grad): less training memory, one more forward
    # pass per step. Every training stage (teacher, MLM, distill, finetune).
    recompute: bool = False
    distribute: DistributeConfig = dataclasses.field(default_factory=DistributeConfig)
    imported: ImportConfig = dataclasses.field(default_factory=ImportConfig)
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)
    grid: GridConfig = dataclasses.field(default_factory=GridConfig)


def _fields(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _all_keys(cls, prefix="") -> list[str]:
    keys = []
    for name, hint in _fields(cls).items():
        keys.append(prefix + name)
        if dataclasses.is_dataclass(hint):
            keys += _all_keys(hint, f"{prefix}{name}.")
    return keys


def _coerce(value, hint, key: str):
    """Checks `value` against the field's type; YAML's '2e-5' strings become floats."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint is list and isinstance(value, (list, tuple)):
        return list(value)
    elif hint is dict and isinstance(value, dict):
        return dict(value)
    elif hint is typing.Any:
        return value
    elif hint in (str, bool) and isinstance(value, hint):
        return value
    raise UserError(f"Config key {key}: expected {getattr(hint, '__name__', hint)}; "
                    f"received {value!r}.")


# Keys that moved; the old name gets an error that names the new one.
RENAMED = {
    "student.loss": "student.distill.loss",
    "student.temperature": "student.distill.temperature",
    "student.alpha": "student.distill.alpha",
    "data.soft_labels": "data.store",
    "data.validation_fraction": "data.heldout_fraction",
    "data.validation_seed": "data.heldout_seed",
}


def _unknown(key: str, cls) -> UserError:
    if key in RENAMED:
        return UserError(f"Config key {key!r} was renamed; use {RENAMED[key]!r}.")
    close = difflib.get_close_matches(key, _all_keys(cls), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UserError(f"Config key {key!r} does not exist.{hint}")


def check_key(key: str) -> None:
    """Refuses a dotted key that is no config field (a sweep's space, a grid's axis)."""
    if key not in _all_keys(Config):
        raise _unknown(key, Config)


def _apply(obj, updates: dict, prefix: str = ""):
    fields = _fields(type(obj))
    for name, value in updates.items():
        key = prefix + name
        if name not in fields:
            while isinstance(value, dict) and len(value) == 1:  # Name the full dotted key.
                (inner, value), = value.items()
                key = f"{key}.{inner}"
            raise _unknown(key, Config)
        hint = fields[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise UserError(f"Config key {key}: expected a mapping; received {value!r}.")
            _apply(getattr(obj, name), value, key + ".")
        else:
            setattr(obj, name, _coerce(value, hint, key))


def _parse_override(item: str) -> tuple[str, object]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected key=value, e.g. student.distill.alpha=0.5.")
    key, raw = item.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # Bare strings (paths, handles) need no quotes.
    if raw in ("true", "false"):
        value = raw == "true"
    if raw in ("null", "None"):
        value = None
    return key.strip(), value


def _set(cfg: Config, key: str, value) -> None:
    """Sets one dotted key, e.g. "student.distill.alpha", with the same checks as YAML."""
    nested = value
    for k in reversed(key.split(".")):
        nested = {k: nested}
    _apply(cfg, nested)


def load(path: str | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Builds the config from defaults, the YAML file at `path` and `key=value` overrides.

    Raises:
      UserError: unreadable YAML, unknown key, wrong type or invalid value.
    """
    cfg = Config()
    if path is not None:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise UserError(f"Config file {path} does not exist.") from None
        except yaml.YAMLError as e:
            raise UserError(f"Config file {path} is not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise UserError(f"Config file {path}: expected a mapping at the top level.")
        _apply(cfg, data)
    for item in overrides:
        _set(cfg, *_parse_override(item))
    validate(cfg)
    return apply_runlocal(cfg)


def _check_ranges(obj, prefix: str = "") -> None:
    """Refuses a number outside the range its field declares (`ranged`)."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            _check_ranges(value, key + ".")
        elif "range" in f.metadata and value is not None and value not in f.metadata["range"]:
            raise UserError(f"{key}: expected a value {f.metadata['range']}; received {value!r}.")


def _check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{key}: expected one of {list(choices)}; received {value!r}.")


def validate(cfg: Config) -> None:
    """Checks values that types alone do not; raises UserError naming the field."""
    task = tasks_lib.get(cfg.task)
    _check_ranges(cfg)
    _check_choice("student.init", cfg.student.init, INITS)
    allowed = stages_lib.student_stages()
    if not cfg.student.stages or cfg.student.stages != [s for s in allowed if s in cfg.student.stages]:
        raise UserError(f"student.stages: expected a non-empty list from {allowed}, in that "
                        f"order; received {cfg.student.stages!r}.")
    kd = cfg.student.distill
    _check_choice("student.distill.loss", kd.loss, LOSSES)  # Before the teacher trains.
    if task.is_regression and kd.loss != "mse":
        raise UserError(f"student.distill.loss: {task.name} is a regression task; expected "
                        f"'mse', received {kd.loss!r}.")
    for key, value in (("grid.assets", cfg.grid.assets), ("sweep.assets", cfg.sweep.assets)):
        _check_choice(key, value, (None, "demo"))
    _check_choice("sweep.oracle", cfg.sweep.oracle, ORACLES)
    t = cfg.teacher
    for k, member in enumerate(t.ensemble):
        if not isinstance(member, dict) or set(member) - set(ENSEMBLE_MEMBER_KEYS):
            raise UserError(f"teacher.ensemble[{k}]: expected a mapping of some of "
                            f"{list(ENSEMBLE_MEMBER_KEYS)}; received {member!r}.")
    _check_choice("teacher.combine", t.combine, COMBINES)
    if t.weights and (len(t.weights) != len(t.ensemble) or not all(
            isinstance(w, (int, float)) and w > 0 for w in t.weights)):
        raise UserError(f"teacher.weights: expected {len(t.ensemble)} positive numbers, one per "
                        f"member of teacher.ensemble; received {t.weights!r}.")
    for k, size in enumerate(cfg.grid.transfer_sizes):
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise UserError(f"grid.transfer_sizes[{k}]: expected a positive number of "
                            f"examples; received {size!r}.")
    _check_choice("distribute.strategy", cfg.distribute.strategy, STRATEGIES)
    _check_choice("imported.kind", cfg.imported.kind, IMPORT_KINDS)
    if cfg.imported.kind == "top_logprobs":
        unknown = sorted(set(cfg.imported.label_words.values()) - set(task.label_names))
        if not cfg.imported.label_words or unknown:
            raise UserError(f"imported.label_words: expected a mapping of label words to "
                            f"{list(task.label_names)} for imported.kind 'top_logprobs'; "
                            f"received {cfg.imported.label_words!r}.")
    _check_choice("precision", cfg.precision, PRECISIONS)
    for key, side in (("teacher.seq_length", cfg.teacher), ("student.seq_length", cfg.student)):
        check_seq_length(side.seq_length, task.is_pair, key)
    if not cfg.data.transfer and not cfg.data.store:
        raise UserError("data.transfer: the transfer set is empty; expected at least one entry "
                        "(or data.store, a store labeled before).")
    transfer_spec.entries(cfg.data.transfer)  # Their form; files and datasets are checked later.


def check_seq_length(seq_length: int, pair: bool, field: str = "seq_length") -> None:
    """Refuses a length that cannot hold one word piece per segment plus [CLS] and [SEP]s."""
    if seq_length < MIN_SEQ_LENGTH[pair]:
        raise UserError(f"{field}={seq_length} cannot hold a {'pair' if pair else 'text'} "
                        f"with its [CLS]/[SEP] tokens; expected at least {MIN_SEQ_LENGTH[pair]}.")


def override(cfg: Config, values: dict) -> Config:
    """A copy of `cfg` with dotted keys set, e.g. {"student.distill.alpha": 0.5}; validated."""
    cfg = copy.deepcopy(cfg)
    for key, value in values.items():
        _set(cfg, key, value)
    validate(cfg)
    return apply_runlocal(cfg)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (`rundir` writes it as RUN/config.yaml)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def apply_runlocal(cfg: Config) -> Config:
    """The `runlocal` switch: tiny data, a few steps, same code path (idempotent)."""
    if not cfg.runlocal:
        return cfg
    for key in ("max_train_examples", "max_transfer_examples", "max_eval_examples"):
        setattr(cfg.data, key, min(64, getattr(cfg.data, key) or 64))
    for schedule in (cfg.teacher.train, cfg.student.mlm.train, cfg.student.distill,
                     cfg.student.finetune):
        schedule.epochs = min(schedule.epochs, 1)
    cfg.teacher.shard_size = min(cfg.teacher.shard_size, 32)
    return cfg
