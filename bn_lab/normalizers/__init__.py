"""The normalizers BN is measured against, each one file behind one interface (registry.NORMALIZERS).

Every normalizer is a `tf.Module` made by `make(name, shape, **options)`, where `shape` is
one example's shape at the normalizer's input, (features,) for a dense layer or
(height, width, channels) for a conv layer. It has
  - `__call__(x, training)`: the normalized x. Whatever training mode updates (population
    statistics, a step count) is in `population_statistics`; inference mode updates nothing;
  - `gamma`, `beta`: its trainable scale and offset;
  - `population_statistics`: the non-trainable variables training mode changes ([] if none),
    what models.kept() puts back after a check, named by `STATISTICS` (in weights.npz);
and declares, as an optimizer declares its norm power:
  - `HAS_POPULATION_STATISTICS`: whether inference mode uses statistics gathered in training
    (exact statistics and the single-image training-mode check apply only then);
  - `SCALE_INVARIANCE`: which part of the preceding kernel can be rescaled without changing the
    output, so what an SGD step means: "column" (each kernel column: lr/‖w_j‖²), "matrix" (the
    whole kernel: lr/‖W‖_F²) or "group" (each group of columns).

Not yet chosen by a run's config: the arms that will compare them are bn_lab's next step
(docs/code.md). batch_norm is models.Network's BN through bn_lab.bn's backends.
"""

from __future__ import annotations

from bn_lab import registry


def make(name: str, shape: tuple[int, ...], **options):
    """A normalizer (registry.NORMALIZERS) for inputs whose one example has `shape`."""
    return registry.NORMALIZERS.get(name)(tuple(shape), **options)
