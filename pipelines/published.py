"""Published GLUE test scores, to set beside ours (facts, from their sources).

The small-BERT release (google-research/bert README, "Well-Read Students Learn Better",
Turc et al. 2019): its GLUE *test* table for the four named sizes. Pairs are the two
metrics of a task as the release prints them (MRPC: F1/accuracy, STS-B: Pearson/Spearman,
QQP: F1/accuracy); MNLI gives matched and mismatched. Our tables are dev-set scores: the
two are marked "published, test" and "ours, dev" wherever they meet.
"""
from __future__ import annotations


# name -> (layers, hidden, published GLUE score, per-task rows)
RELEASE_GLUE_TEST = {
    "BERT-Tiny": (2, 128, 64.2, {"cola": [0.0], "sst2": [83.2], "mrpc": [81.1, 71.1],
                                 "stsb": [74.3, 73.6], "qqp": [62.2, 83.4],
                                 "mnli": [70.2, 70.3], "qnli": [81.5], "rte": [57.2],
                                 "wnli": [62.3]}),
    "BERT-Mini": (4, 256, 65.8, {"cola": [0.0], "sst2": [85.9], "mrpc": [81.1, 71.8],
                                 "stsb": [75.4, 73.3], "qqp": [66.4, 86.2],
                                 "mnli": [74.8, 74.3], "qnli": [84.1], "rte": [57.9],
                                 "wnli": [62.3]}),
    "BERT-Small": (4, 512, 71.2, {"cola": [27.8], "sst2": [89.7], "mrpc": [83.4, 76.2],
                                  "stsb": [78.8, 77.0], "qqp": [68.1, 87.0],
                                  "mnli": [77.6, 77.0], "qnli": [86.4], "rte": [61.8],
                                  "wnli": [62.3]}),
    "BERT-Medium": (8, 512, 73.5, {"cola": [38.0], "sst2": [89.6], "mrpc": [86.6, 81.6],
                                   "stsb": [80.4, 78.4], "qqp": [69.6, 87.9],
                                   "mnli": [80.0, 79.1], "qnli": [87.7], "rte": [62.2],
                                   "wnli": [62.3]}),
}
