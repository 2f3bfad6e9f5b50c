"""Backend `tf_nn`: tf.nn.moments + tf.nn.batch_normalization, population statistics by assignment."""

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
            mean, variance = tf.nn.moments(x, self.axes)
            self.population_mean.assign(self.population_mean * self.momentum + mean * (1 - self.momentum))
            self.population_variance.assign(
                self.population_variance * self.momentum + variance * (1 - self.momentum)
            )
        else:
            mean, variance = self.population_mean, self.population_variance
        return tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, self.epsilon)
