"""The 24 small BERTs of "Well-Read Students Learn Better" (Turc et al. 2019, Sec. 4.1).

L in {2, 4, 6, 8, 10, 12} layers x H in {128, 256, 512, 768} hidden units,
A = H / 64 attention heads, as released on TF Hub. Derived, not listed by hand;
`grid.students: small_bert_24` runs all of them.

    python -c "from students import presets; print(list(presets.PRESETS))"
"""
from distill.config import small_bert

LAYERS = (2, 4, 6, 8, 10, 12)
HIDDEN = (128, 256, 512, 768)


def name(layers: int, hidden: int) -> str:
    return f"bert_en_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}"


PRESETS = {name(l, h): {"encoder": small_bert(l, h), "layers": l, "hidden": h, "heads": h // 64}
           for l in LAYERS for h in HIDDEN}
