"""Backend `manual`: the batch-norm arithmetic written out, no normalisation helpers."""

import tensorflow as tf


class BatchNorm(tf.Module):
    def __init__(self, num_features: int, ndim: int, momentum: float, epsilon: float):
        super().__init__()
        self.axes = list(range(ndim - 1))
        self.momentum = momentum
        self.epsilon = epsilon
        self.gamma = tf.Variable(tf.ones([num_features]), name="gamma")
        self.beta = tf.Variable(tf.zeros([num_features]), name="beta")
        self.population_mean = tf.Variable(tf.zeros([num_features]), trainable=False, name="population_mean")
        self.population_variance = tf.Variable(tf.ones([num_features]), trainable=False, name="population_variance")

    def __call__(self, x, training: bool):
        if training:
            mean = tf.reduce_mean(x, axis=self.axes)
            # Biased variance (divide by n), as Keras uses for its moving variance.
            variance = tf.reduce_mean(tf.square(x - mean), axis=self.axes)
            self.population_mean.assign(self.population_mean * self.momentum + mean * (1 - self.momentum))
            self.population_variance.assign(
                self.population_variance * self.momentum + variance * (1 - self.momentum)
            )
        else:
            mean, variance = self.population_mean, self.population_variance
        return (x - mean) / tf.sqrt(variance + self.epsilon) * self.gamma + self.beta
