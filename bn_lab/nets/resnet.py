"""The residual network of `model.name: resnet` (declared in bn_lab.nets.architecture): basic blocks.

A 3×3 stem convolution (`model.width` channels, stride `model.stem_stride`) and its normalizer,
not activated; then stages of `model.blocks` blocks each; every stage after the first halves the
side (stride 2 in its first block) and doubles the channels. A block adds a branch to its skip
path, with no activation after the sum, so that the skip path carries each block's input
unchanged (x_ℓ = x_{ℓ−1} + f_ℓ(x_{ℓ−1}), De & Smith 2020's form):

    f(x) = norm(conv₂(act(norm(conv₁(x)))))      skip(x) = x, or norm(conv_1×1(x)) where the shape changes

Then the activation, global average pooling and the classifier. The arm's normalizer follows every
convolution (a plain arm: a bias). With He-initialized kernels (`init.distribution: he_normal`)
the sum's variance doubles from block to block without normalization; with BN at the branch's
end each branch adds a variance of one to a skip path that starts at one (the normalized stem,
or a normalized shortcut), so the ℓ-th block of a stage contributes 1/(ℓ+1) of its output's
variance. A residual normalizer (skip_init, fixup) also sees a layer's input before its kernel
(Normalizer.before_kernel): the shortcut takes the branch's first input, as Fixup's code does.
"""

from __future__ import annotations

import tensorflow as tf

from bn_lab.nets.architecture import SHORTCUT
from bn_lab.nets.network import Network


class ResidualNetwork(Network):
    """The declared blocks, each layer's end as a stack's (bias, normalizer, activation if any)."""

    def __call__(
        self,
        x,
        training: bool,
        bn_moments: list | None = None,
        activation_inputs: list | None = None,
        group_size: int | None = None,
        exact_statistics_pass: bool = False,
        residuals: list | None = None,
    ):
        """The logits; the lists receive what a stack's do (bn_lab.nets.network.StackNetwork), in
        declared layer order, and `residuals` each block's (skip path, branch output) before their sum."""
        extras = (bn_moments, activation_inputs, group_size, exact_statistics_pass)
        layers = self.architecture.layers
        h = self._layer_end(0, self._kernel(0, x), training, *extras)
        i = 1
        while i < len(self.hidden):
            block_input = self._before_kernel(i, h)
            r = self._layer_end(i, self._kernel(i, block_input), training, *extras)
            r = self._layer_end(i + 1, self._kernel(i + 1, self._before_kernel(i + 1, r)), training, *extras)
            i += 2
            skip = h
            if i < len(self.hidden) and layers[i].role == SHORTCUT:
                skip = self._layer_end(i, self._kernel(i, block_input), training, *extras)
                i += 1
            if residuals is not None:
                residuals.append((skip, r))
            h = skip + r
        h = tf.reduce_mean(self.activation(h), axis=[1, 2])  # global average pooling
        return self._output(h)

    def _before_kernel(self, i: int, h):
        return self.norms[i].before_kernel(h) if self.norms else h
