"""The `distill` command: the whole recipe, or one stage of it.

    distill run CONFIG --output DIR [--set key=value ...]   # every stage, skipping done ones
    distill sweep CONFIG --output DIR                       # keras-tuner over the student
    distill reproduce CONFIG --output DIR                   # the paper's grid and tables
    distill teacher|label|distill|finetune|evaluate CONFIG --output DIR [--set ...]
    distill demo --output DIR                               # offline, locally built encoders
    distill convert --from {bert-tf1,hf} SRC --output DIR   # checkpoints -> TF Hub format
    distill mlm --student HANDLE --data TEXT... --output DIR  # continued MLM pre-training
    distill export RUN --output DIR [--format tflite|onnx --quantize int8|dynamic]  # serving
    distill export RUN --output DIR --format encoder   # the student's encoder, TF Hub format
    distill inspect STORE [--output DIR]                    # what the teacher taught
    distill import-labels CONFIG --labels FILE --output DIR # a store from another teacher

Bad input ends with one line on stderr naming the file, line or field, and exit
status 2; nothing already written is changed. The output is the tool's own lines and
progress bars; `--verbose` (anywhere on the line) brings back TensorFlow's start-up and
C++ log lines and the libraries' warnings.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import warnings

import distill  # noqa: F401  (selects tf-keras before TensorFlow loads)
from distill import stages
from distill.errors import PartialFailure, UserError


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show TensorFlow's start-up and C++ log lines and library warnings")
    parser = argparse.ArgumentParser(prog="distill", description=__doc__.split("\n")[0],
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: add_parser(*a, parents=[common], **k)
    _config_commands(sub)
    _tool_commands(sub)
    return parser


def _with_config(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text)
    p.add_argument("config", help="YAML config, e.g. configs/glue/sst2.yaml")
    p.add_argument("--output", required=True, help="run directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. student.distill.alpha=0.5")
    return p


def _config_commands(sub) -> None:
    """The commands on a config: the recipe, sweeps, grids and one per stage of the table."""
    _with_config(sub, "run", "run the whole recipe (skips stages already complete)")
    _with_config(sub, "sweep", "keras-tuner sweep over the student stages, one shared teacher and store")
    _with_config(sub, "reproduce", "a grid of students x methods x tasks x seeds (the paper's tables)")
    p = _with_config(sub, "import-labels", "a soft-label store from another teacher's outputs "
                                           "(an LLM, an API, a PyTorch model)")
    p.add_argument("--labels", required=True, help="JSON Lines: text (text_b) and the teacher's "
                                                   "outputs by label name (teachers/imported.py)")
    for name, help_text in stages.commands().items():  # One command per stage, as the table says.
        p = _with_config(sub, name, help_text)
        if name == "label":
            p.add_argument("--worker", type=int, default=None,
                           help="this worker's index w (default: from TF_CONFIG under "
                                "distribute.strategy=multi_worker, else 0)")
            p.add_argument("--num-workers", type=int, default=None,
                           help="number of workers W; worker w writes shards k = w (mod W)")


def _tool_commands(sub) -> None:
    """The commands on models and stores: convert, mlm, export, inspect, demo."""
    conv = sub.add_parser("convert", help="convert a TF1 or Hugging Face BERT checkpoint to TF Hub format")
    conv.add_argument("source", help="checkpoint directory")
    conv.add_argument("--from", dest="fmt", required=True, choices=["bert-tf1", "hf"])
    conv.add_argument("--output", required=True, help="writes OUTPUT/encoder and OUTPUT/preprocessor")
    conv.add_argument("--layers", type=int, default=None,
                      help="keep only the first K Transformer layers (a truncated-teacher student)")
    casing = conv.add_mutually_exclusive_group()
    casing.add_argument("--lower-case", dest="lower_case", action="store_true", default=None)
    casing.add_argument("--cased", dest="lower_case", action="store_false")
    m = sub.add_parser("mlm", help="continue masked-LM pre-training of a student encoder")
    m.add_argument("--student", required=True, help="TF Hub encoder handle or directory with .mlm")
    m.add_argument("--data", required=True, nargs="+", help="text files, one text per line")
    m.add_argument("--output", required=True, help="writes OUTPUT/encoder (TF Hub format)")
    m.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the config's student.mlm section, e.g. train.epochs=2 "
                        "or seq_length=64 (defaults: distill/config.py, MLMConfig)")
    exp = sub.add_parser("export", help="export a run's student for serving on raw strings")
    exp.add_argument("run_dir", help="a run directory made by `distill run`")
    exp.add_argument("--output", required=True, help="the exported model's directory")
    exp.add_argument("--format", default="savedmodel",
                     choices=["savedmodel", "tflite", "onnx", "encoder"],
                     help="savedmodel: raw strings in (tokenizer in the graph); tflite, onnx: "
                          "token ids in, vocab.txt and tokenizer.json beside it; encoder: the "
                          "student's encoder alone, in the TF Hub encoder format")
    exp.add_argument("--quantize", default="none", choices=["none", "dynamic", "float16", "int8"],
                     help="TFLite: all four, int8 calibrated on the run's transfer set; ONNX: "
                          "none or dynamic (int8 weights)")
    ins = sub.add_parser("inspect", help="what the teacher taught: a store's sources, classes, "
                                         "confidence, agreement with gold labels")
    ins.add_argument("store", help="a soft-label store, e.g. RUN/store")
    ins.add_argument("--output", default=None,
                     help="where inspect.md and inspect.png go (default: the store's run directory)")
    demo = sub.add_parser("demo", help="run the whole recipe offline on built-in data and encoders")
    demo.add_argument("--output", required=True, help="run directory")
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


RENAMED_COMMANDS = {"train": "distill"}
# TensorFlow's C++ log lines ("I0000 00:00:... port.cc:153] ...") and absl's note before them.
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:|WARNING: All log messages before absl|"
                         r"To enable the following instructions:)")


def quiet_tensorflow() -> None:
    """Starts TensorFlow without its start-up noise.

    The lines TensorFlow's C++ core writes while it loads (oneDNN, CUDA stubs, cuInit on a
    machine without a GPU) go straight to file descriptor 2 before any log level applies:
    they are caught there and only what is not such a line is passed on. Later C++ logging
    obeys TF_CPP_MIN_LOG_LEVEL=3; Python warnings and absl's are turned off.
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.filterwarnings("ignore")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # Where cuInit complains.
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        kept = [line for line in caught if not TF_LOG_LINE.match(line)]
    sys.stderr.write("".join(kept))
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    tf.get_logger().setLevel("ERROR")


def _export(args) -> None:
    from distill import config as config_lib, rundir
    from students import export, report

    if args.format == "tflite":
        from students import tflite

        tflite.run(args.run_dir, args.output, args.quantize)
    elif args.format == "onnx":
        from students import onnx_export

        onnx_export.run(args.run_dir, args.output, args.quantize)
    elif args.quantize != "none":
        raise UserError("--quantize applies to --format tflite or onnx only.")
    elif args.format == "encoder":
        export.run_encoder(args.run_dir, args.output)
        return
    else:
        export.run(args.run_dir, args.output)
    if os.path.isfile(rundir.RunDir(args.run_dir).metrics):  # Show the export in the report.
        report.run(config_lib.load(rundir.RunDir(args.run_dir).config), args.run_dir)


def _mlm(args) -> None:
    from distill import config as config_lib
    from students import mlm

    cfg = config_lib.load(None, [f"student.mlm.{o}" for o in args.overrides])
    summary = mlm.train(args.student, args.data, os.path.join(args.output, "encoder"),
                        os.path.join(args.output, "train"), cfg.student.mlm, cfg.seed)
    print(f"[mlm] wrote {summary['encoder']}")


def _convert(args) -> None:
    from distill import convert

    summary = convert.convert(args.fmt, args.source, args.output, args.layers, args.lower_case)
    print(f"[convert] {summary['layers']} layers, hidden {summary['hidden_size']}, mlm "
          f"{summary['with_mlm']}, lower_case {summary['lower_case']} -> "
          f"{args.output}/encoder, {args.output}/preprocessor")


def _demo(args) -> None:
    from pipelines import demo

    demo.run(args.output, args.overrides)


def _inspect(args) -> None:
    from pipelines import inspect_store

    inspect_store.inspect(args.store, args.output)


def _import_labels(args) -> None:
    from distill import config as config_lib, preflight, rundir
    from pipelines import glue
    from teachers import imported

    cfg = config_lib.load(args.config, args.overrides)
    preflight.check_can_create(args.output)
    imported.run(cfg, args.labels, args.output)
    store = rundir.RunDir(args.output).store
    glue.save_config(config_lib.override(cfg, {"data.store": store}), args.output)
    print(f"[import-labels] next: distill run {args.config} --output {args.output} "
          f"--set data.store={store}")


def _over_runs(args) -> None:
    """`run`, `sweep` and `reproduce`: what runs over whole run directories."""
    from distill import config as config_lib, distribute
    from pipelines import glue, paper, sweep

    cfg = config_lib.load(args.config, args.overrides)
    distribute.configure(cfg)  # Before anything starts TensorFlow.
    {"run": glue.run, "sweep": sweep.run, "reproduce": paper.run}[args.command](cfg, args.output)


def _stage(args) -> None:
    """`distill STAGE CONFIG --output RUN`: one stage of the table, then the stages without a
    command of their own that read it (`evaluate` writes the report)."""
    from distill import config as config_lib, distribute, rundir
    from pipelines import glue

    cfg = config_lib.load(args.config, args.overrides)
    distribute.configure(cfg)
    rundir.check_writable(args.output)
    if "mlm" in stages.get(args.command).reads:
        cfg = glue.with_mlm_student(cfg, args.output)
    kwargs = {}
    if args.command == "label":
        worker, workers = distribute.label_worker(cfg, args.worker, args.num_workers)
        kwargs = {"worker": worker, "num_workers": workers}
    glue.run_stage(args.command, cfg, args.output, **kwargs)
    for follower in stages.followers(args.command):
        glue.run_stage(follower, cfg, args.output)
    glue.save_config(cfg, args.output)


COMMANDS = {"demo": _demo, "inspect": _inspect, "export": _export, "mlm": _mlm,
            "import-labels": _import_labels,
            "convert": _convert, "run": _over_runs, "sweep": _over_runs, "reproduce": _over_runs}


def _locked_directory(args) -> tuple[str | None, bool]:
    """The run directory a command writes into, and whether cooperating processes share it;
    None for commands that write no run directory."""
    if args.command in ("convert", "mlm", "inspect"):
        return None, False
    directory = args.run_dir if args.command == "export" else args.output
    workers = getattr(args, "num_workers", None) or 1
    # Cooperating processes: labeling workers, a TF_CONFIG cluster, a keras-tuner chief and
    # its workers (one sweep directory).
    return directory, (workers > 1 or "TF_CONFIG" in os.environ
                       or "KERASTUNER_ORACLE_IP" in os.environ)


def _dispatch(args) -> None:
    from distill import rundir

    directory, shared = _locked_directory(args)
    with rundir.lock(directory, shared) if directory else contextlib.nullcontext():
        COMMANDS.get(args.command, _stage)(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in RENAMED_COMMANDS:
        print(f"distill: error: the command {argv[0]!r} was renamed; use "
              f"`distill {RENAMED_COMMANDS[argv[0]]}`.", file=sys.stderr)
        return 2
    args = _parser().parse_args(argv)
    if not getattr(args, "verbose", False):
        quiet_tensorflow()
    if getattr(args, "overrides", None):
        print("[config] --set " + " ".join(args.overrides))
    try:
        _dispatch(args)
    except UserError as e:
        print(f"distill: error: {e}", file=sys.stderr)
        return 2
    except PartialFailure as e:  # Some of the work failed; what finished was written.
        print(f"distill: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("distill: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
