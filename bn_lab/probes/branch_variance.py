"""How much of each residual block's output its branch makes up (De & Smith 2020, §2 and Fig. 2),
at a validation evaluation (and at step 0: initialization).

De & Smith: a residual block computes x_ℓ = x_{ℓ−1} + f_ℓ(x_{ℓ−1}), so, per coordinate,
Var(x_ℓ) = Var(x_{ℓ−1}) + Var(f_ℓ(x_{ℓ−1})) when branch and skip path are uncorrelated. With BN at
the branch's end Var(f_ℓ) ≈ 1, so a skip path that starts at one grows by one a block and "batch
normalization downscales the residual branch relative to the skip connection, by a normalizing
factor on the order of the square root of the network depth": the ℓ-th block's branch is about
1/(ℓ+1) of its output's variance. Without normalization (He init) both double: the share stays ½.

Measured as training sees it: the network in training mode (batch statistics, a normalizer's noise)
on the training batch of the step about to be taken (Trainer.next_batch), every population statistic
put back after (so training with the probe on is bit for bit training with it off:
tests/test_residual.py). Per block, at the row of its branch's last layer (diagnostics.csv counts
hidden layers from 1): each variance is per channel over the batch and the positions, averaged over
channels (the authors' later code, nfnets `signal_metrics`, takes it so):
  - `branch_variance`: of the branch's output f_ℓ, before the sum;
  - `skip_variance`: of the skip path (the block's input, or its normalized shortcut);
  - `branch_share`: branch_variance / the variance of the block's output x_ℓ = skip + f_ℓ.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bn_lab import runtime
from bn_lab.nets import network as models
from bn_lab.nets.architecture import BRANCH_END, SHORTCUT

QUANTITIES = ("branch_variance", "skip_variance", "branch_share")


def channel_variance(h):
    """The variance of each channel over the batch and the positions, averaged over the channels."""
    return tf.reduce_mean(tf.math.reduce_variance(tf.reshape(h, (-1, h.shape[-1])), axis=0))


def branch_end_layers(architecture) -> list[int]:
    """Each block's branch-end layer, counted from 1 as diagnostics.csv counts hidden layers."""
    return [k for k, layer in enumerate(architecture.hidden, start=1) if layer.role == BRANCH_END]


def stage_positions(architecture) -> list[int]:
    """Each block's position since the skip path last started over: the stem, or a block whose
    shortcut is a projection (normalized with BN). With BN the ℓ-th such block's share is ~1/(ℓ+1)."""
    positions, position = [], 0
    hidden = architecture.hidden
    for k, layer in enumerate(hidden):
        if layer.role != BRANCH_END:
            continue
        projected = k + 1 < len(hidden) and hidden[k + 1].role == SHORTCUT
        position = 1 if projected else position + 1
        positions.append(position)
    return positions


class BranchVariance:
    def __init__(self, network: models.Network):
        self.network = network
        self._probe = runtime.compiled(self._probe_impl, jit_compile=False)

    def _probe_impl(self, batch_images):
        network = self.network
        with models.kept(network.population_statistics):
            residuals = []
            network(network.inputs(batch_images), training=True, residuals=residuals)
        return tf.stack(
            [
                tf.stack([channel_variance(branch), channel_variance(skip), channel_variance(skip + branch)])
                for skip, branch in residuals
            ]
        )

    def probe(self, batch_images: np.ndarray) -> list[dict]:
        """[{branch_variance, skip_variance, branch_share}] per block, from the first."""
        found = []
        for branch, skip, output in self._probe(batch_images).numpy().tolist():
            share = branch / output if output > 0 else float("nan")
            found.append({"branch_variance": branch, "skip_variance": skip, "branch_share": share})
        return found
