"""`skip_init` (De & Smith 2020, "Batch Normalization Biases Residual Blocks Towards the Identity
Function in Deep Networks", §4): no normalization; "a learnable scalar multiplier at the end of each
residual branch, initialized to zero" (the authors' code: `skip_gain`, shape (), zeros, after the
branch's last convolution, before the sum). So every block starts as the identity map, x + 0·f(x),
and a deep network starts as shallow as BN makes it (bn_lab.nets.resnet). The convolutions keep
their biases, as in the authors' code; the stem and shortcuts are left as they are.
"""

from bn_lab.nets.architecture import BRANCH_END
from bn_lab.nets.normalizers import Normalizer


class SkipInit(Normalizer):
    RESIDUAL = True
    HIDDEN_BIAS = True
    SCALE_INVARIANCE = None

    def __init__(self, shape: tuple[int, ...], *, layer, blocks: int):
        import tensorflow as tf

        self.multiplies = layer.role == BRANCH_END
        self.alpha = tf.Variable(0.0, name="alpha") if self.multiplies else None

    @property
    def trainable(self) -> dict:
        return {"alpha": self.alpha} if self.multiplies else {}

    def __call__(self, x, training: bool, group_size: int | None = None):
        return x * self.alpha if self.multiplies else x
