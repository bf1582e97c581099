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

from distill import config as config_lib, distribute, encoders, text, transfer as transfer_lib
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


def overrides(paths: dict) -> list[str]:
    """The `--set` items that point configs/demo.yaml at the generated assets."""
    return [
        f"data.labeled=glue_dir:{paths['glue_dir']}",
        f"data.transfer=['labeled:train', 'text:{paths['transfer']}']",
        f"teacher.encoder={paths['teacher']}",
        f"teacher.preprocessor={paths['preprocessor']}",
        f"student.encoder={paths['student']}",
        f"student.preprocessor={paths['vocab']}",
    ]


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
    assets = os.path.join(output, "assets")
    cfg = config_lib.load(CONFIG, [*overrides(asset_paths(assets)), *extra_overrides])
    distribute.configure(cfg)  # Before making the encoders starts TensorFlow.
    if assets_complete(assets):
        print(f"[demo] reusing assets in {assets}")
    else:
        print(f"[demo] writing data, vocab and encoders to {assets}")
        make_assets(assets)
    return glue.run(cfg, output)
