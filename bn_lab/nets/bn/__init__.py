"""Batch normalization behind one small interface, interchangeable backends (registry.BN_BACKENDS).

Every backend is a `tf.Module` with
  - `__call__(x, training)`: training=True normalises with the batch statistics
    (over every axis but the last: per feature for dense, per channel for conv)
    and updates the population statistics; training=False normalises with the
    population statistics and updates nothing;
  - `gamma`, `beta` (trainable) and `population_mean`, `population_variance`
    (not trainable), all `tf.Variable`s of shape (num_features,).
The update is population = population * momentum + batch * (1 - momentum), with
the biased batch variance, which is what Keras' layer does, so the three are
the same function. With `group_size` > 0 the batch statistics are those of groups
of that many examples (ghost batches, bn_lab.nets.bn.groups); 0 is the whole batch.
"""

from __future__ import annotations

from bn_lab import registry


def make(
    backend: str, num_features: int, ndim: int, momentum: float = 0.99, epsilon: float = 1e-3, group_size: int = 0
):
    """A batch-norm module for inputs of rank `ndim` whose last axis has `num_features` (registry.BN_BACKENDS)."""
    return registry.BN_BACKENDS.get(backend)(num_features, ndim, momentum, epsilon, group_size)
