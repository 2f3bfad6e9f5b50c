"""Which training images each step sees, the same for every arm of a run, and the resident
training set they are gathered from.

The order is drawn from the seed alone, on a stream of its own (independent of the model's
shape): shuffled epochs, or batches of a few classes each (data.batch_order). Exact population
statistics average over i.i.d. batches in either case: they stand for the training set's. A chunk's batches are gathered from the resident uint8 training set *outside* the
compiled training loop and handed in as one tensor: gathering from the resident training set
inside the XLA loop is far slower than no XLA at all (docs/performance.md, "Measured choices").
"""

from __future__ import annotations

import numpy as np

# How a run's training batches are drawn (data.batch_order).
ORDERS = (
    "iid",  # shuffled epochs, as TF1's next_batch: batch_order
    "class_grouped",  # each batch from a few classes, Ioffe 2017's non-i.i.d. batches: class_grouped_order
)


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


def class_grouped_order(seed: int, labels: np.ndarray, batch_size: int, steps: int, classes: int) -> np.ndarray:
    """Indices of every training batch, (steps, batch_size) int32, each batch drawn from `classes`
    classes only (Ioffe 2017's non-i.i.d. mini-batches: there, 16 labels of 2 examples each).

    Each step draws its classes at random, without replacement; the batch's examples are shared
    among them as evenly as possible (the first drawn take one more where they do not divide),
    each class's taken in turn from its own stream of shuffled epochs, so every training image is
    seen as often as with i.i.d. batches of its class. The batch is then shuffled, so that ghost
    groups (bn_lab.nets.bn.groups) mix its classes too.
    """
    if problem := class_grouped_problem(labels, classes):
        raise ValueError(problem)
    rng = np.random.default_rng([seed, 1])
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    names = np.array(sorted(members))
    shares = np.full(classes, batch_size // classes)
    shares[: batch_size % classes] += 1
    streams = {c: rng.permutation(m) for c, m in members.items()}
    taken = dict.fromkeys(members, 0)
    order = np.empty((steps, batch_size), np.int64)
    for step in range(steps):
        parts = []
        for c, share in zip(rng.choice(names, classes, replace=False), shares):
            while taken[c] + share > len(streams[c]):  # this class's next epoch
                streams[c] = np.concatenate([streams[c][taken[c] :], rng.permutation(members[c])])
                taken[c] = 0
            parts.append(streams[c][taken[c] : taken[c] + share])
            taken[c] += share
        order[step] = np.concatenate(parts)
    return rng.permuted(order, axis=1).astype(np.int32)


def class_grouped_problem(labels: np.ndarray, classes: int) -> str | None:
    """What keeps class_grouped batches of `classes` classes from being drawn from these training
    labels (None: nothing): they must hold that many classes."""
    found = np.unique(labels)
    if len(found) >= classes:
        return None
    return (
        f"data.classes_per_batch {classes}: the {len(labels):,} training images hold only {len(found)} classes "
        f"({', '.join(map(str, found))}); lower data.classes_per_batch or raise data.train_limit"
    )


def training_order(config: dict, labels: np.ndarray, steps: int | None = None) -> np.ndarray:
    """The run's batches as data.batch_order says, (steps, batch_size) int32 indices into the training set.

    steps: how many (default train.steps). The orders are drawn batch after batch, so a longer
    order begins with the shorter one: batch `train.steps` is the one a further step would take.
    """
    seed, train = config["seed"], config["train"]
    steps = train["steps"] if steps is None else steps
    if config["data"]["batch_order"] == "class_grouped":
        return class_grouped_order(seed, labels, train["batch_size"], steps, config["data"]["classes_per_batch"])
    return batch_order(seed, len(labels), train["batch_size"], steps)


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
        steps = config["train"]["steps"]
        # One batch more than the steps: the probes measure at W(t) on the batch of step t, and
        # after the last step that is the batch a further step would take (never trained on).
        self.order = training_order(config, train_split.labels, steps + 1)
        self.indices = tf.constant(self.order[:steps])

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def chunk(self, first_step, count: int):
        """(images, labels) of `count` steps from `first_step` (a tensor: one trace for every chunk)."""
        import tensorflow as tf

        # Static shapes for XLA: (count, batch size) indices, so every batch's size is known when traced.
        indices = tf.slice(self.indices, [first_step, 0], [count, self.indices.shape[1]])
        return tf.gather(self.images, indices), tf.gather(self.labels, indices)

    def at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of training step `step` (counted from 0; `len(self)`: the batch after the last), as numpy."""
        indices = self.order[step]
        return self.split.images[indices], self.split.labels[indices]
