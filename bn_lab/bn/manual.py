"""Backend `manual`: the batch-norm arithmetic written out, no normalisation helpers."""

import tensorflow as tf

from bn_lab.bn.population import PopulationBatchNorm


class BatchNorm(PopulationBatchNorm):
    def __call__(self, x, training: bool):
        if training:
            mean = tf.reduce_mean(x, axis=self.axes)
            # Biased variance (divide by n), as Keras uses for its moving variance.
            variance = tf.reduce_mean(tf.square(x - mean), axis=self.axes)
            self.update_population(mean, variance)
        else:
            mean, variance = self.population_mean, self.population_variance
        return (x - mean) / tf.sqrt(variance + self.epsilon) * self.gamma + self.beta
