"""Which training images each step sees, the same for every arm of a run, and the resident
training set they are gathered from.

The order is drawn from the seed alone, on a stream of its own (independent of the model's
shape). A chunk's batches are gathered from the resident uint8 training set *outside* the
compiled training loop and handed in as one tensor: gathering from the 43 MB training set inside
the XLA loop made it 3-4x slower than no XLA at all (measured, see scripts/bench.py).
"""

from __future__ import annotations

import numpy as np


def batch_order(seed: int, num_examples: int, batch_size: int, steps: int) -> np.ndarray:
    """Indices of every training batch, (steps, batch_size) int32.

    As TF1's `mnist.train.next_batch`: each epoch is a fresh shuffle, batches are
    taken in order, and a batch that crosses an epoch boundary takes the end of one
    epoch and the start of the next.
    """
    rng = np.random.default_rng([seed, 1])  # its own stream: independent of the model's shape
    needed = steps * batch_size
    epochs = -(-needed // num_examples)
    stream = np.concatenate([rng.permutation(num_examples) for _ in range(epochs)])[:needed]
    return stream.reshape(steps, batch_size).astype(np.int32)


def precise_bn_batches(seed: int, num_examples: int, batch_size: int, images: int) -> np.ndarray:
    """Indices of the fixed training batches that exact population statistics average over, (k, batch_size).

    The same batches at every evaluation of a run, drawn once from a stream of their own.
    """
    rng = np.random.default_rng([seed, 2])
    count = max(1, min(images, num_examples) // batch_size)
    return rng.permutation(num_examples)[: count * batch_size].reshape(count, batch_size).astype(np.int32)


class ResidentBatches:
    """The training set as constants and the run's batch order: what every arm's steps read."""

    def __init__(self, config: dict, train_split):
        import tensorflow as tf

        self.split = train_split
        self.images = tf.constant(train_split.images)
        self.labels = tf.constant(train_split.labels)
        train = config["train"]
        self.indices = tf.constant(
            batch_order(config["seed"], len(train_split.labels), train["batch_size"], train["steps"])
        )

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def chunk(self, first_step, count: int):
        """(images, labels) of `count` steps from `first_step` (a tensor: one trace for every chunk)."""
        import tensorflow as tf

        indices = tf.slice(self.indices, [first_step, 0], [count, -1])  # static shape for XLA
        return tf.gather(self.images, indices), tf.gather(self.labels, indices)

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of training step `step` (counted from 0), as numpy."""
        indices = self.indices[step].numpy()
        return self.split.images[indices], self.split.labels[indices]
