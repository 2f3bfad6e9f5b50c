"""Backend `manual`: the batch-norm arithmetic written out, no normalisation helpers."""

import tensorflow as tf

from bn_lab.nets.bn.population import PopulationBatchNorm


class BatchNorm(PopulationBatchNorm):
    def moments(self, x, axes, keepdims: bool = False):
        mean = tf.reduce_mean(x, axis=axes, keepdims=keepdims)
        # Biased variance (divide by n), as Keras uses for its moving variance.
        variance = tf.reduce_mean(tf.square(x - mean), axis=axes, keepdims=keepdims)
        return mean, variance

    def normalize(self, x, mean, variance):
        return (x - mean) / tf.sqrt(variance + self.epsilon) * self.gamma + self.beta
