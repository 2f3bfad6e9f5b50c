"""What training minimises and how: the optimizers and losses of registry.OPTIMIZERS and registry.LOSSES."""

from __future__ import annotations

import tensorflow as tf

from bn_lab import registry

# Each optimizer's `norm_power` p: a BN layer is scale-invariant in each kernel column w, so a
# step turns w as a step of lr/‖w‖^p would turn it at unit norm (its effective learning rate,
# bn_lab.probes.diagnostics). SGD: the gradient shrinks as 1/‖w‖ and the step is lr times it, p = 2.
# Adam: its step is ~lr per weight whatever the gradient's scale, p = 1.


def sgd(learning_rate: float):
    return tf.keras.optimizers.SGD(learning_rate=learning_rate)  # plain gradient descent, no momentum


sgd.norm_power = 2


def adam(learning_rate: float):
    # TF1's AdamOptimizer, which the notebooks used, has epsilon 1e-8 (Keras' default is 1e-7).
    return tf.keras.optimizers.Adam(learning_rate=learning_rate, epsilon=1e-8)


adam.norm_power = 1


def softmax_cross_entropy(logits, labels):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def sigmoid_cross_entropy(logits, labels):
    # The conv net notebooks: mean sigmoid cross-entropy against the one-hot labels.
    labels = tf.one_hot(labels, logits.shape[-1])
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def make_optimizer(config: dict):
    """The configured optimizer; an unknown name is an error, never a fallback."""
    return registry.OPTIMIZERS.get(config["optimizer"]["name"])(config["optimizer"]["learning_rate"])


def effective_lr_norm_power(config: dict) -> int:
    """p of the configured optimizer's effective learning rate lr/‖w‖^p (see norm_power above)."""
    name = config["optimizer"]["name"]
    power = getattr(registry.OPTIMIZERS.get(name), "norm_power", None)
    if power is None:
        raise ValueError(
            f"optimizer {name!r} has no norm_power (2 for SGD-like steps, 1 for Adam-like ones), "
            "which the diagnostics' effective learning rate needs; set it, or diagnostics.enabled: false"
        )
    return power


def loss_function(name: str):
    return registry.LOSSES.get(name)
