"""What a network is worth: loss and accuracy on a whole split in inference mode, the same with
exact population statistics, with batch statistics (training mode, on batches the size of a
training batch: what the network saw while it trained), and the single-image checks with their
generalization, accuracy in training mode against the evaluation batch's size. Each runs an
arm's network as it is and leaves it as it was (what training mode changes is put back, bit for
bit).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from bn_lab import runtime
from bn_lab.nets import network as models

# The test images the batch-size curve evaluates: 960 is a multiple of every size of the curve of
# the lessons' batches (1, 2, 4, ..., 32 and 60; ..., 32 and 64), so there each size sees all of them.
CURVE_IMAGES = 960


# A single image's prediction where its logits were NaN or inf (summary.json's `predictions`).
NO_PREDICTION = -1


def curve_sizes(batch_size: int) -> list[int]:
    """The evaluation batch sizes of the batch-size curve: 1, 2, 4, ... below the training batch, and it."""
    return [2**k for k in range(batch_size.bit_length()) if 2**k < batch_size] + [batch_size]


def _figures(loss: float, accuracy: float, top_class_share: float) -> tuple[float, float, float]:
    """An evaluation's loss, accuracy and top class share. Where the loss is NaN or inf, as training
    calls a network diverged, some logits were not numbers, whose argmax is class 0: the accuracy
    and share are no figures then (NaN), never an accuracy to report as best."""
    if not math.isfinite(loss):
        return loss, math.nan, math.nan
    return loss, accuracy, top_class_share


def correct(logits, labels):
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32))


def _sums(logits, labels, loss, classes: int):
    """What an evaluation call returns: the loss summed over its images, the correct predictions,
    each class's count of predictions, and each image's predicted class (NO_PREDICTION where its
    logits are not numbers: their argmax, class 0, is no prediction)."""
    n = tf.cast(tf.shape(labels)[0], tf.float32)
    predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
    counts = tf.reduce_sum(tf.one_hot(predicted, classes, dtype=tf.int32), axis=0)  # XLA has no bincount
    each = tf.where(tf.reduce_all(tf.math.is_finite(logits), axis=1), predicted, NO_PREDICTION)
    return loss(logits, labels) * n, correct(logits, labels), counts, each


def _summed(calls) -> tuple[tuple[float, float, float], np.ndarray]:
    """The figures (_figures) and each image's predicted class over the _sums of calls that cover
    the images once."""
    loss_sum = correct_sum = 0.0
    counts, predicted = 0, []
    for batch_loss, batch_correct, batch_counts, batch_predicted in calls:
        loss_sum += float(batch_loss)
        correct_sum += float(batch_correct)
        counts = counts + batch_counts.numpy()
        predicted.append(batch_predicted.numpy())
    predicted = np.concatenate(predicted)
    n = len(predicted)
    return _figures(loss_sum / n, correct_sum / n, float(np.max(counts) / n)), predicted


class Evaluator:
    """The checks of one run's networks ({arm name: models.Network}); `precise_batches`, (k, batch,
    features) uint8, are the fixed training batches exact statistics average over (None: off)."""

    def __init__(
        self,
        networks: dict,
        loss,
        jit: bool,
        precise_batches: np.ndarray | None = None,
        batch_size: int | None = None,
        eval_batch_size: int = 1000,
    ):
        """batch_size: the training batch's, the size of the batch-statistics evaluation's batches
        (None: no batch-statistics evaluation); eval_batch_size: images per inference-mode call
        (train.eval_batch_size)."""
        self.networks, self.loss = networks, loss
        # Every arm's network takes the same inputs (the run's model and pixel statistics): each
        # split's images are converted once a run, not in every check (docs/performance.md).
        any_network = next(iter(networks.values()))
        self._to_inputs = any_network.inputs
        self._converted: dict[int, tuple[np.ndarray, tf.Tensor]] = {}  # id(images) -> (images, inputs)
        self._precise_inputs = None  # the exact statistics' batches, as network inputs
        if precise_batches is not None:
            k, batch, _ = precise_batches.shape
            converted = self._to_inputs(precise_batches.reshape(k * batch, -1))
            self._precise_inputs = tf.reshape(converted, (k, batch, *converted.shape[1:]))
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        # Any number of images a call, each function traced once for all (a split's last, shorter
        # call; the single images): a trace of the conv net costs more than its calls.
        images = tf.TensorSpec([None, *any_network.input_shape], tf.float32)
        labels = tf.TensorSpec([None], tf.int32)
        # Not XLA: one forward pass a call, where XLA saves little and compiles again for every
        # split's shape (docs/performance.md, "A run's fixed costs").
        self._evaluate = {
            a: runtime.compiled(lambda x, y, a=a: self._evaluate_impl(a, x, y), False, [images, labels])
            for a in networks
        }
        population = [a for a, network in networks.items() if network.arm.has_population_statistics]
        self._moments = {
            a: runtime.compiled(lambda batches, a=a: self._moments_impl(a, batches), jit) for a in population
        }
        # The training-mode pass, its group size a tensor: one trace serves the batch-statistics
        # evaluation and every size of the batch-size curve (tracing the conv net's graph again for
        # each size cost more than running it). Not XLA: it reshapes into groups of a size known
        # only when it runs.
        self._in_training_mode = {
            a: runtime.compiled(
                lambda x, y, group, a=a: self._in_training_mode_impl(a, x, y, group),
                False,
                [images, labels, tf.TensorSpec([], tf.int32)],
            )
            for a in population
        }

    # --- compiled pieces -------------------------------------------------------------

    def _evaluate_impl(self, arm, inputs, labels):
        network = self.networks[arm]
        logits = network(inputs, training=False)
        return _sums(logits, labels, self.loss, network.architecture.layers[-1].units)

    def _moments_impl(self, arm, batches):
        """Exact population statistics: each normalizer's input mean and biased variance, averaged
        over (k, batch, ...) batches of network inputs, as the values its population statistics take
        (normalizers' exact_statistics).

        Each layer's statistics must come from the inputs it will see at inference. fvcore's
        precise_bn way: one pass over the batches in training mode, every layer normalized by its
        batch moments, which in expectation is what the layers below compute with population
        statistics. A normalizer whose training mode does more than that (Batch Renorm's
        correction towards the moving averages, noisy BN's noise) leaves it out of this pass
        (Normalizer.for_exact_statistics). Several batches go in one call, each its own group (or
        each of an arm's ghost groups: the normalizers' group_size), as in _in_training_mode_impl:
        the same moments as a call per batch, added in another order. What the pass updates is
        restored, bit for bit, before returning; the weights are never touched.
        """
        network = self.networks[arm]
        k, batch = batches.shape[:2]
        input_shape = tuple(batches.shape[2:])
        group = self._group(arm, batch)
        per_call = min(k, self._per_call(batch))  # batches a call
        calls, rest = divmod(k, per_call)

        def moments_of(inputs):
            found = []
            network(inputs, training=True, bn_moments=found, exact_statistics_pass=True, group_size=group)
            return [value for mean_and_variance in found for value in mean_and_variance]

        chunks = tf.reshape(batches[: calls * per_call], (calls, per_call * batch, *input_shape))
        zeros = [tf.zeros([norm.gamma.shape[0]]) for norm in network.norms for _ in range(2)]  # mean, variance
        with models.kept(network.population_statistics) as saved:
            _, sums = tf.while_loop(
                lambda i, _: i < calls,
                lambda i, sums: (i + 1, [total + value for total, value in zip(sums, moments_of(chunks[i]))]),
                (tf.constant(0), zeros),
            )
            # Each call's moments are its batches' average: weighted by its batches.
            sums = [total * per_call for total in sums]
            if rest:
                tail = moments_of(tf.reshape(batches[calls * per_call :], (rest * batch, *input_shape)))
                sums = [total + value * rest for total, value in zip(sums, tail)]
        means = [total / k for total in sums]
        exact = [
            v for j, norm in enumerate(network.norms) for v in norm.exact_statistics(means[2 * j], means[2 * j + 1])
        ]
        return [before if value is None else value for value, before in zip(exact, saved)]  # None: kept as it was

    def _in_training_mode_impl(self, arm, inputs, labels, group):
        """Loss sum, correct predictions and class counts over n images' inputs in training mode,
        each run of `group` (a scalar tensor; n a multiple of it) consecutive images normalized with
        its own statistics, noisy BN's noise included, as a training batch (or a ghost group of
        one) is in a training step.

        One pass over many groups (the normalizers' group_size) in place of one call per batch: the
        same statistics per group, and larger calls cost less per image (docs/performance.md, "A
        run's fixed costs"); the convolutions' and reductions' last bits may differ from a call per
        batch. The population statistics (and step counts) this changes are put back, bit for bit.
        """
        network = self.networks[arm]
        with models.kept(network.population_statistics):
            logits = network(inputs, training=True, group_size=group)
        return _sums(logits, labels, self.loss, network.architecture.layers[-1].units)

    # --- the checks ------------------------------------------------------------------

    def _inputs(self, images: np.ndarray) -> tf.Tensor:
        """A whole split's images as network inputs, converted at the first check that reads them.
        The entry holds the array itself, so its id cannot name another array while it lives."""
        found = self._converted.get(id(images))
        if found is None or found[0] is not images:
            found = self._converted[id(images)] = (images, self._to_inputs(images))
        return found[1]

    def has_exact_statistics(self, arm: str) -> bool:
        return self._precise_inputs is not None and arm in self._moments

    def evaluate(self, arm: str, split) -> tuple[float, float, float]:
        """Mean loss, accuracy and top class share of `arm`'s predictions on a whole split, inference mode."""
        return self.evaluate_each(arm, split)[0]

    def evaluate_each(self, arm: str, split) -> tuple[tuple[float, float, float], np.ndarray]:
        """evaluate()'s figures, and each image's predicted class (NO_PREDICTION where its logits were
        not numbers), in calls of eval_batch_size images."""
        inputs, labels, step = self._inputs(split.images), split.labels, self.eval_batch_size
        return _summed(
            self._evaluate[arm](inputs[start : start + step], labels[start : start + step])
            for start in range(0, len(labels), step)
        )

    def has_batch_statistics(self, arm: str) -> bool:
        return self.batch_size is not None and arm in self._moments

    def evaluate_batch_statistics(self, arm: str, split) -> tuple[float, float, float]:
        """evaluate() in training mode, on the split's first whole batches of the training batch size
        (5,000 validation images: 4,980 in batches of 60, 4,992 in batches of 64), each batch (each
        of its ghost groups, for an arm with groups) normalized by itself."""
        count = len(split.labels) // self.batch_size * self.batch_size
        inputs, labels = self._inputs(split.images)[:count], split.labels[:count]
        return self._training_mode(arm, inputs, labels, self._group(arm, self.batch_size))[0]

    def _training_mode(
        self, arm: str, inputs: tf.Tensor, labels: np.ndarray, group: int
    ) -> tuple[tuple[float, float, float], np.ndarray]:
        """_in_training_mode_impl's figures over whole groups of images' inputs, in calls of about
        eval_batch_size images (whole groups: at least one), and each image's predicted class."""
        group_size = tf.constant(group)  # a tensor: every size runs the arm's one trace
        return _summed(
            self._in_training_mode[arm](inputs[part], labels[part], group_size)
            for part in self._calls(len(labels), group)
        )

    def batch_size_curve(self, arm: str, split, batch_size: int, predicted_in_inference: np.ndarray) -> dict:
        """Accuracy in training mode on the split's first images fed in batches of each of
        curve_sizes(batch_size) images, each batch normalized with its own statistics as one group
        (whatever the arm's group size: how many images must normalize each other), beside
        inference mode on exactly the same images (a size that does not divide the images sees
        their first whole batches): from which batch size batch statistics stand in for the
        population's. The images: CURVE_IMAGES, or one training batch if that is more, at most the
        split (the config makes sure it holds one training batch). predicted_in_inference: the
        split's evaluate_each() predictions, whose first images give inference mode's figure at
        every size (inference mode treats each image alone: one evaluation serves them all)."""
        available = min(len(split.labels), max(CURVE_IMAGES, batch_size))
        inputs, labels = self._inputs(split.images)[:available], split.labels[:available]
        predicted = predicted_in_inference[:available]
        # 1 right, 0 wrong, NaN where the logits were not numbers (no prediction, as in _figures).
        correct_in_inference = np.where(predicted == NO_PREDICTION, np.nan, (predicted == labels).astype(np.float64))
        sizes = curve_sizes(batch_size)
        used, training, inference = [], [], []
        for n in sizes:
            count = len(labels) // n * n  # its whole batches
            used.append(count)
            training.append(self._training_mode(arm, inputs[:count], labels[:count], group=n)[0][1])
            inference.append(float(np.mean(correct_in_inference[:count], dtype=np.float64)))
        group_size = self.networks[arm].arm.options.get("group_size", 0)
        return {
            "images": used,  # per size: its whole batches' images, the same in both modes
            "group_size": group_size,  # the groups it trained with (0: the whole batch); the curve's are whole batches
            "sizes": sizes,
            "training_mode": training,
            "inference_mode": inference,
        }

    def _group(self, arm: str, batch_size: int) -> int:
        """How many consecutive images normalize each other in a training batch of `batch_size` of
        `arm`: its ghost group size, or the whole batch."""
        return self.networks[arm].arm.options.get("group_size", 0) or batch_size

    def _per_call(self, unit: int) -> int:
        """How many whole units of `unit` images (batches, groups) a training-mode call takes: as
        many as eval_batch_size holds, at least one."""
        return max(1, self.eval_batch_size // unit)

    def _calls(self, count: int, group: int):
        """Slices of `count` images (whole groups of `group`) for calls of about eval_batch_size images."""
        per_call = self._per_call(group) * group
        return [slice(start, start + per_call) for start in range(0, count, per_call)]

    def exact_population_statistics(self, arm: str) -> list[np.ndarray]:
        """What every population statistic of `arm` becomes with exact statistics, in order."""
        return [t.numpy() for t in self._moments[arm](self._precise_inputs)]

    def evaluate_precise(self, arm: str, split) -> tuple[float, float, float]:
        """evaluate() with exact population statistics in place of the EMA ones, which are restored after."""
        statistics = self.networks[arm].population_statistics
        with models.kept(statistics):
            models.restore(statistics, self._moments[arm](self._precise_inputs))
            return self.evaluate(arm, split)

    def single_images_in_training_mode(self, arm: str, images: np.ndarray) -> np.ndarray:
        """The class predicted for each image fed alone in training mode (NO_PREDICTION where its
        logits were not numbers): normalized by itself, a group of one (_in_training_mode_impl) in
        calls of many images, as a batch of one is, its last bits aside. It runs the trace the
        batch-statistics check runs: no network is traced for this check alone. (Inference mode
        needs no check of its own: it treats every image alone whatever the batch, so a run takes
        the single images' predictions from its test evaluation, evaluate_each.)"""
        labels = np.zeros(len(images), np.int32)  # they only feed the loss and accuracy, not returned
        return self._training_mode(arm, self._to_inputs(images), labels, group=1)[1]
