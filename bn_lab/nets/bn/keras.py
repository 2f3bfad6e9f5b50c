"""Backend `keras`: tf.keras.layers.BatchNormalization.

Keras 3's layer has no ghost batches (`virtual_batch_size` was dropped): with groups, training
mode takes each group's moments and normalizes with Keras' own ops (keras.ops.moments,
keras.ops.batch_normalization, what the layer calls), and updates the layer's moving statistics
as the layer does. Without groups it is the layer, untouched.
"""

import keras
import tensorflow as tf

from bn_lab.nets.bn.population import BatchNormBase


class BatchNorm(BatchNormBase):
    def __init__(self, num_features: int, ndim: int, momentum: float, epsilon: float, group_size: int = 0):
        super().__init__(momentum, epsilon, group_size)
        self.layer = tf.keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
        self.layer.build((None,) * (ndim - 1) + (num_features,))
        # Keras wraps its weights; the tf.Variables underneath are what tapes,
        # optimizers and checkpoints of the other backends see too.
        self.gamma = self.layer.gamma.value
        self.beta = self.layer.beta.value
        self.population_mean = self.layer.moving_mean.value
        self.population_variance = self.layer.moving_variance.value

    def whole(self, x, training: bool):
        return self.layer(x, training=training)

    def moments(self, x, axes, keepdims: bool = False):
        return keras.ops.moments(x, axes, keepdims=keepdims)

    def normalize(self, x, mean, variance):
        return keras.ops.batch_normalization(
            x, mean, variance, axis=-1, offset=self.beta, scale=self.gamma, epsilon=self.epsilon
        )
