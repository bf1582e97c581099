"""distill: pre-trained distillation of small BERTs on GLUE (Turc et al. 2019).

Importing any part of the package selects tf-keras (Keras 2) before TensorFlow
is imported: TF Hub's `hub.KerasLayer` and our SavedModels are tf-keras objects.
The modules name `tf_keras` directly as well, so they work even where the caller
imported TensorFlow first (and `tf.keras` became Keras 3).
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
