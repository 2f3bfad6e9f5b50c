"""`fixup` (Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without
Normalization", §3), no normalization:

  "1. Initialize the classification layer and the last layer of each residual branch to 0.
   2. Initialize every other layer using a standard method (e.g., Kaiming He), and scale only the
      weight layers inside residual branches by L^(−1/(2m−2)).
   3. Add a scalar multiplier (initialized at 1) in every branch and a scalar bias (initialized
      at 0) before each convolution, linear, and element-wise activation layer."

L is the number of residual branches (the authors' code: the number of blocks), m the layers in
a branch: 2 in a basic block, so the branch's first kernel is scaled by L^(−1/2). As the
authors' basic block places them:

    conv₁(x + b₁ₐ) → + b₁ᵦ → act → conv₂(· + b₂ₐ) → · multiplier + b₂ᵦ      (the shortcut takes x + b₁ₐ)

and the stem: conv + a scalar bias. The authors' training script gives the scalar biases and
multipliers a tenth of the base learning rate (`'lr': args.base_lr/10.`): so do we
(LEARNING_RATE_FACTORS). Left out, and said in docs/experiments.md: the scalar bias
before the classifier (the classifier has its own bias). The run's initial weights are He's
fan-in for every arm; the authors' code draws He fan-out, the same where a convolution keeps its
channels (all but a stage's first).
"""

from bn_lab.nets.architecture import BRANCH, BRANCH_END, OUTPUT, STEM
from bn_lab.nets.normalizers import Normalizer


class Fixup(Normalizer):
    RESIDUAL = True
    HIDDEN_BIAS = False  # the scalar biases replace them
    SCALE_INVARIANCE = None
    BRANCH_LAYERS = 2  # m: the layers of a basic block's branch
    LEARNING_RATE_FACTORS = {"bias_before": 0.1, "bias_after": 0.1, "multiplier": 0.1}

    def __init__(self, shape: tuple[int, ...], *, layer, blocks: int):
        import tensorflow as tf

        self.role = layer.role
        scalar = lambda name, value: tf.Variable(value, name=name)  # noqa: E731
        self.variables = {}
        if self.role in (BRANCH, BRANCH_END):
            self.variables["bias_before"] = scalar("bias_before", 0.0)
        if self.role == BRANCH_END:
            self.variables["multiplier"] = scalar("multiplier", 1.0)
        if self.role in (STEM, BRANCH, BRANCH_END):
            self.variables["bias_after"] = scalar("bias_after", 0.0)

    @property
    def trainable(self) -> dict:
        return self.variables

    @classmethod
    def initial_kernels(cls, architecture, kernels: list) -> list:
        scale = architecture.blocks ** (-1.0 / (2 * cls.BRANCH_LAYERS - 2))
        arm_kernels = []
        for layer, kernel in zip(architecture.layers, kernels):
            if layer.role in (BRANCH_END, OUTPUT):
                kernel = kernel * 0
            elif layer.role == BRANCH:
                kernel = kernel * scale
            arm_kernels.append(kernel.astype(kernels[0].dtype))
        return arm_kernels

    def before_kernel(self, x):
        return x + self.variables["bias_before"] if "bias_before" in self.variables else x

    def __call__(self, x, training: bool, group_size: int | None = None):
        if "multiplier" in self.variables:
            x = x * self.variables["multiplier"]
        return x + self.variables["bias_after"] if "bias_after" in self.variables else x
