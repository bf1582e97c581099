"""Teacher presets: the BERT-Base and BERT-Large encoders of TF Hub (Devlin et al. 2019, Table 1)."""
from distill.config import HUB

PRESETS = {
    "bert_base": {"encoder": f"{HUB}/bert_en_uncased_L-12_H-768_A-12/4", "layers": 12, "hidden": 768},
    "bert_large": {"encoder": f"{HUB}/bert_en_uncased_L-24_H-1024_A-16/4", "layers": 24,
                   "hidden": 1024},
}
