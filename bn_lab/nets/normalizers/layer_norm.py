"""`layer_norm` (Ba et al. 2016): each example normalized over all its features (in the conv net
over height, width and channels); Keras' LayerNormalization. No batch dependence, so no
population statistics; the output is unchanged when the whole preceding kernel is rescaled."""

from bn_lab.nets.normalizers.keras_layer import KerasLayer


class LayerNorm(KerasLayer):
    OPTIONS = {"epsilon": 1e-3}
    SCALE_INVARIANCE = "matrix"

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-3):
        import keras

        super().__init__(keras.layers.LayerNormalization(axis=list(range(1, len(shape) + 1)), epsilon=epsilon), shape)
