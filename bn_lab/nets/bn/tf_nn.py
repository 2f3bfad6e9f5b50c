"""Backend `tf_nn`: tf.nn.moments + tf.nn.batch_normalization, population statistics by assignment."""

import tensorflow as tf

from bn_lab.nets.bn.population import PopulationBatchNorm


class BatchNorm(PopulationBatchNorm):
    def moments(self, x, axes, keepdims: bool = False):
        return tf.nn.moments(x, axes, keepdims=keepdims)

    def normalize(self, x, mean, variance):
        return tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, self.epsilon)
