"""`group_norm` (Wu & He 2018): each example normalized over groups of channels (with the
spatial positions); Keras' GroupNormalization. No population statistics; the output is unchanged
when the kernel columns of one group are rescaled together."""

from bn_lab.nets.normalizers.keras_layer import KerasLayer


class GroupNorm(KerasLayer):
    OPTIONS = {"groups": 4, "epsilon": 1e-3}
    SCALE_INVARIANCE = "group"

    @classmethod
    def problem(cls, shape: tuple[int, ...], options: dict) -> str | None:
        groups = options.get("groups", cls.OPTIONS["groups"])
        if groups < 1 or shape[-1] % groups:
            return f"{shape[-1]} channels do not split into {groups} groups"
        return super().problem(shape, options)

    def __init__(self, shape: tuple[int, ...], groups: int = 4, epsilon: float = 1e-3):
        import keras

        if problem := self.problem(shape, {"groups": groups}):
            raise ValueError(f"group_norm: {problem}")
        self.groups = groups
        super().__init__(keras.layers.GroupNormalization(groups=groups, axis=-1, epsilon=epsilon), shape)
