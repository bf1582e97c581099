"""The form of `data.transfer`: its entries, options and the paper's recipes (no TensorFlow).

The config checks every entry's form when it loads; `distill/transfer.py` opens the
sources and filters them.

    python -c "from distill import transfer_spec; print(transfer_spec.RECIPES['nli_star'])"
"""
from __future__ import annotations

import dataclasses

from distill.errors import UserError

# The paper's transfer sets (Turc et al. 2019). NLI*: the text pairs of SNLI
# (550,152 train), MNLI (392,702) and QQP (363,846), about 1.3M pairs, for MNLI and RTE.
# Movie Reviews*: IMDB's 100,000 reviews (train, test and unsupervised, Maas et al. 2011)
# split into sentences, for SST-2; the paper's set also held other review text.
RECIPES = {
    "nli_star": ["tfds:snli:train:premise,hypothesis",
                 "tfds:multi_nli:train:premise,hypothesis",
                 "tfds:glue/qqp:train:question1,question2"],
    "movie_reviews_star": [{"source": f"tfds:imdb_reviews/plain_text:{split}:text",
                            "sentences": True} for split in ("train", "test", "unsupervised")],
}
OPTIONS = ("source", "sample", "max_examples", "seed", "sentences")


@dataclasses.dataclass
class Entry:
    """One source of the transfer set and how much of it to take."""

    source: str
    sample: int | None = None
    max_examples: int | None = None
    seed: int = 0
    sentences: bool = False


def entries(transfer: list) -> list[Entry]:
    """`data.transfer` as entries, recipes expanded.

    Raises:
      UserError: an entry of the wrong form, an unknown option or recipe.
    """
    out = []
    for i, item in enumerate(transfer):
        where = f"data.transfer[{i}]"
        if isinstance(item, str):
            item = {"source": item}
        if not isinstance(item, dict) or "source" not in item:
            raise UserError(f"{where}: expected a source string or a mapping with 'source'; "
                            f"received {item!r}.")
        unknown = sorted(set(item) - set(OPTIONS))
        if unknown:
            raise UserError(f"{where}: unknown option(s) {unknown}; expected some of {list(OPTIONS)}.")
        kind, _, name = str(item["source"]).partition(":")
        if kind == "recipe":
            if name not in RECIPES:
                raise UserError(f"{where}: unknown recipe {name!r}; expected one of {sorted(RECIPES)}.")
            out += entries([{**(r if isinstance(r, dict) else {"source": r}),
                             **{k: v for k, v in item.items() if k != "source"}}
                            for r in RECIPES[name]])
            continue
        if kind not in ("labeled", "text", "tfds"):
            raise UserError(f"{where}: source {item['source']!r} must start with 'labeled:', "
                            f"'text:', 'tfds:' or 'recipe:'.")
        for option in ("sample", "max_examples"):
            value = item.get(option)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(f"{where}.{option}: expected a positive integer; received {value!r}.")
        out.append(Entry(**item))
    return out


