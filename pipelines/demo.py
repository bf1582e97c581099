"""The embedded offline default: the whole recipe on locally made encoders and data.

    distill demo --output runs/demo

It writes, under OUTPUT/assets, a small synthetic sentiment task in the GLUE
SST-2 layout (train/dev/test TSV), unlabeled transfer text, a WordPiece vocab,
a teacher encoder (L=2, H=128) and a smaller student encoder (L=2, H=64)
exported in the TF Hub format, and a preprocessor SavedModel in the
`bert_en_uncased_preprocess/3` format. Then it runs `configs/demo.yaml` through
`pipelines.glue.run`, the code path of `distill run`.

What it shows: every stage, the store, resume and the report work end to end
offline. What it does not: the encoders are randomly initialised, not
pre-trained, so the scores say nothing about real GLUE accuracy.
"""
from __future__ import annotations

import os
import random

from distill import (config as config_lib, convert, distribute, encoders, rundir, text,
                     transfer as transfer_lib)
from pipelines import glue

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "demo.yaml")

POSITIVE = ["good", "great", "fine", "lovely", "superb", "brilliant", "warm", "funny", "moving",
            "clever"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "weak", "cold", "silly", "flat", "clumsy"]
NOUNS = ["movie", "film", "plot", "cast", "script", "story", "ending", "music", "acting", "scene"]
FILLER = ["the", "a", "this", "that", "was", "is", "really", "quite", "very", "and", "but",
          "overall", "it", "not"]


def sentence(rng: random.Random) -> tuple[str, int]:
    """A short review; its label is the majority sentiment of its adjectives, "not" flips one."""
    words, votes = [rng.choice(["the", "this", "that", "a"]), rng.choice(NOUNS), "was"], 0
    for i in range(rng.choice([1, 2, 3])):
        if i:
            words += [rng.choice(["and", "but", "and really"]), "it", "was"]
        positive = rng.random() < 0.5
        adjective = rng.choice(POSITIVE if positive else NEGATIVE)
        negate = rng.random() < 0.2
        words += (["not"] if negate else [rng.choice(["", "quite", "very", "really"])]) + [adjective]
        votes += 1 if positive != negate else -1
    if votes == 0:
        votes = 1 if positive != negate else -1  # Ties go to the last clause.
    return " ".join(w for w in words if w), int(votes > 0)


def make_assets(root: str, seed: int = 0, train: int = 2000, dev: int = 400,
                unlabeled: int = 4000) -> dict:
    """Writes the demo's data, vocab and encoders under `root`; returns their paths."""
    rng, seen = random.Random(seed), set()

    def new_sentence() -> tuple[str, int]:
        # Every sentence once across all files: the contamination guard and de-duplication
        # (distill/transfer.py) then keep the whole transfer set, as with real data.
        while True:
            text_, label = sentence(rng)
            if transfer_lib.normalize(text_) not in seen:
                seen.add(transfer_lib.normalize(text_))
                return text_, label

    glue_dir = os.path.join(root, "SST-2")
    os.makedirs(glue_dir, exist_ok=True)
    for name, n in (("train.tsv", train), ("dev.tsv", dev)):
        with open(os.path.join(glue_dir, name), "w") as f:
            f.write("sentence\tlabel\n")
            f.writelines(f"{s}\t{y}\n" for s, y in (new_sentence() for _ in range(n)))
    with open(os.path.join(glue_dir, "test.tsv"), "w") as f:
        f.write("index\tsentence\n")
        f.writelines(f"{i}\t{new_sentence()[0]}\n" for i in range(dev))
    transfer = os.path.join(root, "unlabeled.txt")
    with open(transfer, "w") as f:
        f.writelines(f"{new_sentence()[0]}\n" for _ in range(unlabeled))

    vocab = os.path.join(root, "vocab.txt")
    words = sorted(set(POSITIVE + NEGATIVE + NOUNS + FILLER + ["really", "quite", "very"]))
    with open(vocab, "w") as f:
        f.write("\n".join([*text.SPECIAL_TOKENS, *words, ".", ","]) + "\n")
    size = len(text.SPECIAL_TOKENS) + len(words) + 2
    teacher = encoders.BertConfig(num_layers=2, hidden_size=128, num_heads=2, vocab_size=size,
                                  max_position=64)
    student = encoders.BertConfig(num_layers=2, hidden_size=64, num_heads=2, vocab_size=size,
                                  max_position=64)
    paths = asset_paths(root)
    encoders.export_random(paths["teacher"], teacher, vocab, seed=seed)
    encoders.export_random(paths["student"], student, vocab, seed=seed + 1)
    text.export(paths["preprocessor"], vocab)  # Written last: its presence marks completion.
    return paths


def settings(paths: dict) -> dict:
    """The config keys that point configs/demo.yaml at the generated assets."""
    return {
        "data.labeled": f"glue_dir:{paths['glue_dir']}",
        "data.transfer": ["labeled:train", f"text:{paths['transfer']}"],
        "teacher.encoder": paths["teacher"],
        "teacher.preprocessor": paths["preprocessor"],
        "student.encoder": paths["student"],
        "student.preprocessor": paths["vocab"],
    }


def overrides(paths: dict) -> list[str]:
    """`settings` as `--set` items."""
    return [f"{key}={value!r}" if isinstance(value, list) else f"{key}={value}"
            for key, value in settings(paths).items()]


PLACEHOLDER = "SET_BY_DEMO"


def fill_placeholders(cfg: config_lib.Config, root: str) -> config_lib.Config:
    """The config with every key it leaves SET_BY_DEMO pointed at the demo's assets, which
    are built under `root` when missing (`sweep.assets: demo`)."""
    flat = config_lib.to_dict(cfg)

    def current(key):
        value = flat
        for part in key.split("."):
            value = value[part]
        return value

    keys = [k for k in settings(asset_paths(root)) if PLACEHOLDER in str(current(k))]
    if not keys:
        return cfg
    paths = ensure_assets(root)
    return config_lib.override(cfg, {k: settings(paths)[k] for k in keys})


def ensure_assets(root: str) -> dict:
    """The demo's assets under `root`, written unless already complete."""
    if assets_complete(root):
        print(f"[demo] reusing assets in {root}")
        return asset_paths(root)
    print(f"[demo] writing data, vocab and encoders to {root}")
    return make_assets(root)


def asset_paths(root: str) -> dict:
    """The paths `make_assets(root)` wrote."""
    return {"glue_dir": os.path.join(root, "SST-2"), "transfer": os.path.join(root, "unlabeled.txt"),
            "vocab": os.path.join(root, "vocab.txt"),
            "teacher": os.path.join(root, "teacher_encoder"),
            "student": os.path.join(root, "student_encoder"),
            "preprocessor": os.path.join(root, "preprocessor")}


def assets_complete(root: str) -> bool:
    return all(os.path.isfile(os.path.join(root, d, "saved_model.pb"))
               for d in ("teacher_encoder", "student_encoder", "preprocessor"))


def run(output: str, extra_overrides: list[str] = ()) -> dict:
    assets = rundir.assets(output)
    cfg = config_lib.load(CONFIG, [*overrides(asset_paths(assets)), *extra_overrides])
    distribute.configure(cfg)  # Before making the encoders starts TensorFlow.
    ensure_assets(assets)
    results = glue.run(cfg, output)
    paths = rundir.RunDir(output, cfg)
    print(f"[demo] done. Open {paths.report} for the scores, sizes and timings; the teacher's "
          f"soft labels are in {paths.store} (`distill inspect {paths.store}` shows what it "
          f"taught); training curves: `tensorboard --logdir {output}`. Next: the same recipe "
          f"on real data, `distill run configs/glue/sst2.yaml --output runs/sst2`.")
    return results


def grid_assets(root: str) -> list[str]:
    """`grid.assets: demo`: the demo's data and encoders, plus a smaller student and a
    1-layer truncated teacher; returns the overrides that point a grid at them."""
    paths = ensure_assets(root)
    small, truncated = os.path.join(root, "student_small"), os.path.join(root, "teacher_L1")
    if not os.path.isfile(os.path.join(truncated, "saved_model.pb")):
        with open(paths["vocab"]) as f:
            size = len(f.read().splitlines())
        encoders.export_random(small, encoders.BertConfig(
            num_layers=1, hidden_size=32, num_heads=2, vocab_size=size, max_position=64),
            paths["vocab"], seed=2)
        convert.truncate(paths["teacher"], 1, truncated)
    return overrides(paths)
