"""Ghost batches: the normalization batch smaller than the SGD batch (Hoffer et al. 2017; Wu &
Johnson 2021, "Rethinking 'Batch' in BatchNorm", §3).

A batch-statistics normalizer with `group_size` g > 0 splits each training batch of n examples
into n/g consecutive groups and normalizes each group with its own mean and (biased) variance.
Its population statistics move towards the groups' statistics averaged over the groups, as
Keras 2's `virtual_batch_size` did (Keras 3 dropped it), so that exact statistics (their true
average over fixed batches) estimate the same thing. g = 0, the default, is the whole batch: the
code path of a normalizer without groups, bit for bit. A batch that does not split into at least
two whole groups (a check's single image, an evaluation batch smaller than g) is one group.

Pure Python until a function runs: the config checks group sizes before TensorFlow loads.
"""

from __future__ import annotations


def problem(group_size: int, batch_size: int) -> str | None:
    """What is wrong with this group size for training batches of `batch_size`, or None."""
    if group_size < 0:
        return f"must be >= 0 (0: the whole batch), got {group_size}"
    if group_size and batch_size % group_size:
        divisors = [d for d in range(1, batch_size + 1) if batch_size % d == 0]
        shown = ", ".join(map(str, divisors[:12])) + (", ..." if len(divisors) > 12 else "")
        return (
            f"{group_size} does not divide train.batch_size {batch_size}; "
            f"allowed: 0 (the whole batch) or a divisor of {batch_size} ({shown})"
        )
    return None


def count(batch: int, group_size: int) -> int:
    """How many groups a batch of `batch` examples is normalized in."""
    if group_size <= 0 or group_size >= batch or batch % group_size:
        return 1
    return batch // group_size


def split(x, group_size):
    """x of shape (n, ...) as (groups, n / groups, ...) and the axes of one group's statistics
    (every axis but the group's and the features'), or None where the batch is one group.

    group_size may be a scalar tensor, where one traced function serves every size (the
    batch-size curve's): then x must be whole groups of it, one group included, and is always
    split."""
    import tensorflow as tf

    axes = list(range(1, len(x.shape)))
    if isinstance(group_size, tf.Tensor):
        return tf.reshape(x, tf.concat([[-1, group_size], tf.shape(x)[1:]], 0)), axes
    batch = x.shape[0]
    if group_size <= 0:
        return None
    if batch is None:  # only where a caller traced without a static batch: decided when it runs
        batch = tf.shape(x)[0]
        groups = tf.where((batch > group_size) & (batch % group_size == 0), batch // group_size, 1)
    else:
        groups = count(batch, group_size)
        if groups == 1:
            return None
    if isinstance(groups, int) and x.shape[1:].is_fully_defined():  # static: XLA needs constant shapes
        grouped = tf.reshape(x, (groups, batch // groups, *x.shape[1:]))
    else:
        grouped = tf.reshape(x, tf.concat([[groups, -1], tf.shape(x)[1:]], 0))
    return grouped, axes


def merge(grouped, x):
    """The groups back in x's shape (static where x's is: XLA needs constant shapes)."""
    import tensorflow as tf

    if x.shape.is_fully_defined():
        return tf.reshape(grouped, x.shape)
    merged = tf.reshape(grouped, tf.shape(x))
    merged.set_shape(x.shape)  # what is known of it (the conv net's fast path reads its map's side)
    return merged


def over_groups(statistic):
    """A statistic taken per group (keepdims: (groups, 1, ..., features)) averaged over the groups: (features,)."""
    import tensorflow as tf

    return tf.reduce_mean(statistic, axis=list(range(len(statistic.shape) - 1)))


def moments(x, group_size: int):
    """The mean and biased variance a normalizer's training mode moves its population statistics
    towards: of the whole batch (per feature), or averaged over its groups."""
    import tensorflow as tf

    found = split(x, group_size)
    if found is None:
        return tf.nn.moments(x, list(range(len(x.shape) - 1)))
    grouped, axes = found
    mean, variance = tf.nn.moments(grouped, axes, keepdims=True)
    return over_groups(mean), over_groups(variance)
