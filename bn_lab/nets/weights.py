"""The initial weights: every kernel of a declared architecture drawn once from the seed, with numpy,
so that every arm of a run starts from the same arrays (biases start at zero and are not drawn)."""

from __future__ import annotations

import numpy as np

from bn_lab.nets.architecture import Architecture

INITS = ("normal", "truncated_normal", "glorot_uniform", "he_normal")


def fans(shape) -> tuple[int, int]:
    """(fan in, fan out) of a kernel: a dense (in, out) or a conv (k, k, in, out)."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def initial_weights(config: dict, architecture: Architecture) -> list[np.ndarray]:
    """One float32 kernel per declared layer, in order.

    normal, truncated_normal: N(0, init.scale²) (truncated: redrawn beyond two standard deviations,
    as tf.random.truncated_normal does); glorot_uniform: U(±sqrt(6 / (fan in + fan out)));
    he_normal: N(0, 2 / fan in), He et al. 2015's, for relu networks (the residual network's).
    """
    # A stream of its own, so that the batch order does not depend on the model's shape.
    rng = np.random.default_rng([config["seed"], 0])
    distribution, scale = config["init"]["distribution"], config["init"]["scale"]
    kernels = []
    for shape in (layer.kernel_shape for layer in architecture.layers):
        if distribution == "normal":
            w = rng.normal(0.0, scale, shape)
        elif distribution == "truncated_normal":
            w = rng.normal(0.0, scale, shape)
            while (outside := np.abs(w) > 2 * scale).any():
                w[outside] = rng.normal(0.0, scale, outside.sum())
        elif distribution == "he_normal":
            w = rng.normal(0.0, np.sqrt(2.0 / fans(shape)[0]), shape)
        else:  # glorot_uniform
            fan_in, fan_out = fans(shape)
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-limit, limit, shape)
        kernels.append(w.astype(np.float32))
    return kernels
