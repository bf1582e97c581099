"""XLA on this CPU: one L-4 H-256 training step (forward + backward), plain and jit-compiled.

    python benchmarks/xla_cpu.py

One fixed batch shape (32 x 16), so XLA compiles once and the timed steps are
steady state on both sides. Prints a JSON object.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import distill  # noqa: E402,F401
import processes  # noqa: E402  (benchmarks/, this script's directory)
import tensorflow as tf  # noqa: E402

from distill import config, encoders, losses, models  # noqa: E402


def main() -> None:
    with processes.scratch("xla-") as root:
        vocab = os.path.join(root, "vocab.txt")
        with open(vocab, "w") as f:
            f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                              + [f"w{i}" for i in range(30517)]) + "\n")
        cfg = encoders.BertConfig(4, 256, 4, 30522)
        model = models.build(encoders.export_random(os.path.join(root, "encoder"), cfg, vocab), 2, dropout=0.1)
        ids = tf.random.stateless_uniform([32, 16], [0, 1], 5, 30522, tf.int32)
        batch = {"input_word_ids": ids, "input_mask": tf.ones_like(ids),
                 "input_type_ids": tf.zeros_like(ids), "logits": tf.zeros([32, 2]),
                 "label": tf.fill([32], tf.constant(-1, tf.int64))}

        def grads(b):
            with tf.GradientTape() as tape:
                logits = model({n: b[n] for n in encoders.INPUT_NAMES}, training=True)
                kd = config.DistillConfig()  # The config's defaults.
                loss, _ = losses.total(logits, b["logits"], b["label"], loss=kd.loss,
                                       temperature=kd.temperature, alpha=kd.alpha, regression=False)
            return tape.gradient(loss, model.trainable_variables)

        result = {}
        for name, fn, warm, timed in (("plain", tf.function(grads), 5, 20),
                                      ("xla", tf.function(grads, jit_compile=True), 2, 5)):
            for _ in range(warm):
                fn(batch)
            t0 = time.perf_counter()
            for _ in range(timed):
                out = fn(batch)
            float(tf.reduce_sum(out[-1]))
            result[f"{name}_ms_per_step"] = (time.perf_counter() - t0) / timed * 1000
        result["xla_over_plain"] = result["xla_ms_per_step"] / result["plain_ms_per_step"]
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
