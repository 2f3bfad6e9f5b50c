"""bn_lab: reproducible batch-normalization experiments on MNIST with TensorFlow 2 / Keras."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA stubs) is noise in a CLI; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
