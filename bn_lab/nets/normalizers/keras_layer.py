"""What layer_norm and group_norm share: a Keras normalization layer, built for one shape, behind
the normalizers' interface."""

from bn_lab.nets.normalizers import Normalizer


class KerasLayer(Normalizer):
    HAS_POPULATION_STATISTICS = False
    STATISTICS = ()  # no batch dependence: nothing gathered in training

    def __init__(self, layer, shape: tuple[int, ...]):
        self.layer = layer
        self.layer.build((None, *shape))
        # Keras wraps its weights; the tf.Variables underneath are what tapes and optimizers see.
        self.gamma = self.layer.gamma.value
        self.beta = self.layer.beta.value
        self.population_statistics = []

    def __call__(self, x, training: bool, group_size: int | None = None):  # no batch: no groups
        return self.layer(x, training=training)
