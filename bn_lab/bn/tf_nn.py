"""Backend `tf_nn`: tf.nn.moments + tf.nn.batch_normalization, population statistics by assignment."""

import tensorflow as tf

from bn_lab.bn.population import PopulationBatchNorm


class BatchNorm(PopulationBatchNorm):
    def __call__(self, x, training: bool):
        if training:
            mean, variance = tf.nn.moments(x, self.axes)
            self.update_population(mean, variance)
        else:
            mean, variance = self.population_mean, self.population_variance
        return tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, self.epsilon)
