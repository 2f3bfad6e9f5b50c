"""What the three backends share: the population update, and ghost batches (bn_lab.nets.bn.groups)."""

import tensorflow as tf

from bn_lab.nets.bn import groups


class BatchNormBase(tf.Module):
    """A backend computes `whole(x, training)`, batch norm over the whole batch (its own code path),
    and, for groups, `moments(x, axes, keepdims)` and `normalize(x, mean, variance)`;
    it sets gamma, beta, population_mean and population_variance (tf.Variables)."""

    def __init__(self, momentum: float, epsilon: float, group_size: int):
        super().__init__()
        self.momentum = momentum
        self.epsilon = epsilon
        self.group_size = group_size  # 0: the whole batch

    def update_population(self, mean, variance) -> None:
        """population = population * momentum + batch * (1 - momentum), as Keras' layer does."""
        self.population_mean.assign(self.population_mean * self.momentum + mean * (1 - self.momentum))
        self.population_variance.assign(self.population_variance * self.momentum + variance * (1 - self.momentum))

    def __call__(self, x, training: bool, group_size: int | None = None):
        """group_size: this call's groups in training mode (None: the module's own; 0: the whole batch)."""
        found = groups.split(x, self.group_size if group_size is None else group_size) if training else None
        if found is None:
            return self.whole(x, training)
        grouped, axes = found
        mean, variance = self.moments(grouped, axes, keepdims=True)
        self.update_population(groups.over_groups(mean), groups.over_groups(variance))
        return groups.merge(self.normalize(grouped, mean, variance), x)


class PopulationBatchNorm(BatchNormBase):
    """gamma, beta and the population statistics, kept as plain tf.Variables (tf_nn, manual)."""

    def __init__(self, num_features: int, ndim: int, momentum: float, epsilon: float, group_size: int = 0):
        super().__init__(momentum, epsilon, group_size)
        self.axes = list(range(ndim - 1))  # all but the features: per feature (dense), per channel (conv)
        self.gamma = tf.Variable(tf.ones([num_features]), name="gamma")
        self.beta = tf.Variable(tf.zeros([num_features]), name="beta")
        self.population_mean = tf.Variable(tf.zeros([num_features]), trainable=False, name="population_mean")
        self.population_variance = tf.Variable(tf.ones([num_features]), trainable=False, name="population_variance")

    def whole(self, x, training: bool):
        if training:
            mean, variance = self.moments(x, self.axes)
            self.update_population(mean, variance)
        else:
            mean, variance = self.population_mean, self.population_variance
        return self.normalize(x, mean, variance)
