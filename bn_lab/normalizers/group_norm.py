"""`group_norm` (Wu & He 2018): each example normalized over groups of channels (with the
spatial positions); Keras' GroupNormalization. No population statistics; the output is unchanged
when the kernel columns of one group are rescaled together."""

import keras

from bn_lab.normalizers.keras_layer import KerasLayer


class GroupNorm(KerasLayer):
    SCALE_INVARIANCE = "group"

    def __init__(self, shape: tuple[int, ...], groups: int = 4, epsilon: float = 1e-3):
        if shape[-1] % groups:
            raise ValueError(f"group_norm: {shape[-1]} channels do not split into {groups} groups")
        self.groups = groups
        super().__init__(keras.layers.GroupNormalization(groups=groups, axis=-1, epsilon=epsilon), shape)
