"""Backend `keras`: tf.keras.layers.BatchNormalization."""

import tensorflow as tf


class BatchNorm(tf.Module):
    def __init__(self, num_features: int, ndim: int, momentum: float, epsilon: float):
        super().__init__()
        self.layer = tf.keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
        self.layer.build((None,) * (ndim - 1) + (num_features,))
        # Keras wraps its weights; the tf.Variables underneath are what tapes,
        # optimizers and checkpoints of the other backends see too.
        self.gamma = self.layer.gamma.value
        self.beta = self.layer.beta.value
        self.population_mean = self.layer.moving_mean.value
        self.population_variance = self.layer.moving_variance.value

    def __call__(self, x, training: bool):
        return self.layer(x, training=training)
