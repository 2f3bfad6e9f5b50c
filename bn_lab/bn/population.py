"""What the `tf_nn` and `manual` backends share: the variables and the population update."""

import tensorflow as tf


class PopulationBatchNorm(tf.Module):
    """gamma, beta and the population statistics, kept as plain tf.Variables."""

    def __init__(self, num_features: int, ndim: int, momentum: float, epsilon: float):
        super().__init__()
        self.axes = list(range(ndim - 1))  # all but the features: per feature (dense), per channel (conv)
        self.momentum = momentum
        self.epsilon = epsilon
        self.gamma = tf.Variable(tf.ones([num_features]), name="gamma")
        self.beta = tf.Variable(tf.zeros([num_features]), name="beta")
        self.population_mean = tf.Variable(tf.zeros([num_features]), trainable=False, name="population_mean")
        self.population_variance = tf.Variable(tf.ones([num_features]), trainable=False, name="population_variance")

    def update_population(self, mean, variance) -> None:
        """population = population * momentum + batch * (1 - momentum), as Keras' layer does."""
        self.population_mean.assign(self.population_mean * self.momentum + mean * (1 - self.momentum))
        self.population_variance.assign(self.population_variance * self.momentum + variance * (1 - self.momentum))
