"""`layer_norm` (Ba et al. 2016): each example normalized over all its features (in the conv net
over height, width and channels); Keras' LayerNormalization. No batch dependence, so no
population statistics; the output is unchanged when the whole preceding kernel is rescaled."""

import keras
import tensorflow as tf


class LayerNorm(tf.Module):
    HAS_POPULATION_STATISTICS = False
    SCALE_INVARIANCE = "matrix"
    STATISTICS = ()  # the names of population_statistics, as weights.npz has them

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-3):
        super().__init__()
        self.layer = keras.layers.LayerNormalization(axis=list(range(1, len(shape) + 1)), epsilon=epsilon)
        self.layer.build((None, *shape))
        # Keras wraps its weights; the tf.Variables underneath are what tapes and optimizers see.
        self.gamma = self.layer.gamma.value
        self.beta = self.layer.beta.value
        self.population_statistics = []

    def __call__(self, x, training: bool):
        return self.layer(x, training=training)
