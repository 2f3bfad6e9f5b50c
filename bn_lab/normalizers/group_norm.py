"""`group_norm` (Wu & He 2018): each example normalized over groups of channels (with the
spatial positions); Keras' GroupNormalization. No population statistics; the output is unchanged
when the kernel columns of one group are rescaled together."""

import keras
import tensorflow as tf


class GroupNorm(tf.Module):
    HAS_POPULATION_STATISTICS = False
    SCALE_INVARIANCE = "group"
    STATISTICS = ()  # the names of population_statistics, as weights.npz has them

    def __init__(self, shape: tuple[int, ...], groups: int = 4, epsilon: float = 1e-3):
        super().__init__()
        if shape[-1] % groups:
            raise ValueError(f"group_norm: {shape[-1]} channels do not split into {groups} groups")
        self.groups = groups
        self.layer = keras.layers.GroupNormalization(groups=groups, axis=-1, epsilon=epsilon)
        self.layer.build((None, *shape))
        self.gamma = self.layer.gamma.value
        self.beta = self.layer.beta.value
        self.population_statistics = []

    def __call__(self, x, training: bool):
        return self.layer(x, training=training)
