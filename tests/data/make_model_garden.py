"""Writes tests/data/model_garden/{bert,projected}: tiny encoders exported by TF Model Garden's
own TF Hub exporter (official/nlp/tools/export_tfhub_lib.py), the way TF Hub's BERT
SavedModels were made, with every weight drawn at random (not the initializers' zeros and
ones), so that a wrong mapping shows in the outputs.

tf-models-official pins TensorFlow 2.20, so this runs in an environment of its own:

    python -m venv /tmp/tfm && /tmp/tfm/bin/pip install tf-models-official==2.20.0
    /tmp/tfm/bin/python tests/data/make_model_garden.py
"""
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from official.legacy.bert import configs
from official.nlp.tools import export_tfhub_lib

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_garden")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(45)]


def export(name: str, embedding_size=None, seed=0) -> None:
    cfg = configs.BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=40,
                             max_position_embeddings=24, type_vocab_size=2, hidden_act="gelu",
                             embedding_size=embedding_size)
    _, pretrainer = export_tfhub_lib._create_model(bert_config=cfg, with_mlm=True)
    rng = np.random.default_rng(seed)
    for v in pretrainer.checkpoint_items["encoder"].variables + pretrainer.variables:
        if v.dtype == tf.float32:
            v.assign(rng.normal(0, 0.5, v.shape).astype(np.float32))
    work = tempfile.mkdtemp()
    path = tf.train.Checkpoint(**pretrainer.checkpoint_items).save(os.path.join(work, "ckpt"))
    vocab = os.path.join(work, "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    export_tfhub_lib.export_model(out, bert_config=cfg, model_checkpoint_path=path,
                                  with_mlm=True, vocab_file=vocab, do_lower_case=True)


if __name__ == "__main__":
    export("bert")
    export("projected", embedding_size=8, seed=1)
