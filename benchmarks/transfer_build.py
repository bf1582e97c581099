"""Building a transfer set streams: peak memory and rate of `transfer.build` at 10^4..10^6.

    python benchmarks/transfer_build.py [--sizes 10000,100000,1000000]

Writes a generated text source of the largest size (random sentences, one in ten
repeated so de-duplication has work), then builds the transfer set of its first
N lines for each size in a fresh process (so each peak RSS, VmHWM, is its own),
with the contamination guard checking against a generated SST-2 dev and test set
(or the real dev set from ../shared/data when present). Prints one table row per size.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

import processes  # benchmarks/, this script's directory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_SST2 = os.path.join(ROOT, "..", "shared", "data", "glue", "SST-2")

CHILD = """
import json, sys, time
sys.path[:0] = [{root!r}, {here!r}]
import processes
from distill import config, tasks, transfer
cfg = config.load(None, ["data.labeled=glue_dir:{glue}", "data.transfer=['text:{text}']"])
t0 = time.time()
source, report = transfer.build(cfg.data, tasks.get("sst2"), progress=False)
seconds = time.time() - t0
print(json.dumps({{"seconds": seconds, "kept": source.total_examples,
                  "report": report["sources"][0], "peak_rss_kib": processes.peak_rss_kib()}}))
"""


def make_data(root: str, lines: int) -> tuple[str, str]:
    """A GLUE SST-2 directory (dev, test) and a text file of `lines` sentences."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    glue = os.path.join(root, "SST-2")
    os.makedirs(glue)
    dev_path = os.path.join(SHARED_SST2, "dev.tsv")
    dev = (open(dev_path).read().splitlines()[1:] if os.path.isfile(dev_path) else
           [" ".join(rng.choices(words, k=12)) + "\t1" for _ in range(872)])
    with open(os.path.join(glue, "train.tsv"), "w") as f:
        f.write("sentence\tlabel\na film\t1\n")
    with open(os.path.join(glue, "dev.tsv"), "w") as f:
        f.write("sentence\tlabel\n" + "\n".join(dev) + "\n")
    with open(os.path.join(glue, "test.tsv"), "w") as f:
        f.write("index\tsentence\n" + "".join(f"{i}\t{d.split(chr(9))[0]}\n" for i, d in enumerate(dev)))
    text = os.path.join(root, "source.txt")
    with open(text, "w") as f:
        previous = []
        for i in range(lines):
            if previous and i % 10 == 0:
                line = rng.choice(previous)
            else:
                line = " ".join(rng.choices(words, k=rng.randint(5, 30)))
                if len(previous) < 1000:
                    previous.append(line)
            f.write(line + "\n")
    return glue, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with processes.scratch("transfer-bench-") as root:
        glue, full = make_data(root, max(sizes))
        print("| examples | seconds | examples/s | kept | duplicates dropped | peak RSS (MiB) |")
        print("|---|---|---|---|---|---|")
        results = []
        for n in sizes:
            text = os.path.join(root, f"first{n}.txt")
            with open(full) as src, open(text, "w") as dst:
                for _, line in zip(range(n), src):
                    dst.write(line)
            try:
                r = processes.run_python(["-c", CHILD.format(root=ROOT, here=processes.HERE,
                                                             glue=glue, text=text)])
            except RuntimeError as e:
                sys.exit(str(e))
            r["examples"] = n
            results.append(r)
            dropped = r["report"]["sampled"] - r["report"]["after_duplicates"]
            print(f"| {n:,} | {r['seconds']:.1f} | {n / r['seconds']:,.0f} | {r['kept']:,} | "
                  f"{dropped:,} | {r['peak_rss_kib'] / 1024:,.0f} |", flush=True)
        print(json.dumps(results))


if __name__ == "__main__":
    main()
