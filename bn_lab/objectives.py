"""What training minimises and how: the optimizers and losses of registry.OPTIMIZERS and registry.LOSSES."""

from __future__ import annotations

import tensorflow as tf

from bn_lab import models, registry


def sgd(learning_rate: float):
    return tf.keras.optimizers.SGD(learning_rate=learning_rate)  # plain gradient descent, no momentum


def adam(learning_rate: float):
    # TF1's AdamOptimizer, which the notebooks used, has epsilon 1e-8 (Keras' default is 1e-7).
    return tf.keras.optimizers.Adam(learning_rate=learning_rate, epsilon=1e-8)


def softmax_cross_entropy(logits, labels):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def sigmoid_cross_entropy(logits, labels):
    # The conv net notebooks: mean sigmoid cross-entropy against the one-hot labels.
    labels = tf.one_hot(labels, models.NUM_CLASSES)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def make_optimizer(config: dict):
    """The configured optimizer; an unknown name is an error, never a fallback."""
    return registry.OPTIMIZERS.get(config["optimizer"]["name"])(config["optimizer"]["learning_rate"])


def loss_function(name: str):
    return registry.LOSSES.get(name)
