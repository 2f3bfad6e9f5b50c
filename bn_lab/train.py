"""Paired training: the network without BN and the network with BN, same start, same batches.

Speed comes from running a whole chunk of steps (the steps between two
evaluations) inside one XLA-compiled tf.while_loop. The chunk's batches are
gathered from the resident uint8 training set *outside* the compiled loop and
handed in as one tensor: gathering from the 43 MB training set inside the XLA
loop made it 3-4x slower than no XLA at all (measured, see scripts/bench.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from bn_lab import models, runtime, schema
from bn_lab.footprint import EVAL_BATCH
from bn_lab.objectives import loss_function, make_optimizer
from bn_lab.schema import VARIANTS


@dataclass
class Evaluation:
    variant: str
    step: int  # number of updates applied before this evaluation
    split: str  # one of schema's splits: VALIDATION, PRECISE_BN, TRAIN_BATCH, TEST
    loss: float
    accuracy: float
    top_class_share: float | None = None  # share of the images predicted as the most predicted class


@dataclass
class VariantResult:
    diverged: bool = False
    diverged_at_step: int | None = None
    steps_trained: int = 0
    # Steady-state training speed: steps per second of the chunks this network trained in,
    # the first chunk (tracing and XLA compilation) left out; None if it trained in no other.
    # While both networks of a pair train, they train at once, and each reports that rate.
    steps_per_second: float | None = None
    final_top_class_share: float | None = None
    final_val_loss: float | None = None
    final_val_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    single_sample_inference: float | None = None
    single_sample_training: float | None = None
    predictions: list[int] | None = None
    predictions_training: list[int] | None = None


@dataclass
class TrainResult:
    evaluations: list[Evaluation]
    variants: dict[str, VariantResult]
    train_seconds: float
    single_samples: int
    diagnostics: list[dict]  # rows of diagnostics.csv: variant, step, layer, quantity, value


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


def _correct(logits, labels):
    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32))


class PairTrainer:
    """Trains `variants` (by default both) of the configured network on the same batches."""

    def __init__(self, config: dict, data, initial_weights: list[np.ndarray], variants=VARIANTS):
        self.config = config
        self.data = data
        self.variants = tuple(variants)
        train = config["train"]
        jit = train["jit_compile"]
        # Outside XLA (the conv net), the networks take their faster CPU formulation (see models.Network).
        self.networks = {
            v: models.Network(config, initial_weights, with_bn=(v == "with_bn"), name=v, fast=not jit)
            for v in self.variants
        }
        self.optimizers = {v: make_optimizer(config) for v in self.variants}
        for v in self.variants:
            self.optimizers[v].build(self.networks[v].parameters)
        self.loss = loss_function(config["loss"])
        self.diverged_at: dict[str, int] = {}  # variant -> first step with a NaN/inf loss
        self.input_shape = self.networks[self.variants[0]].input_shape
        self.train_images = tf.constant(data.train.images)
        self.train_labels = tf.constant(data.train.labels)
        self.batch_indices = tf.constant(
            batch_order(config["seed"], len(data.train.labels), train["batch_size"], train["steps"])
        )
        self.steps_done = 0
        self.gradient_norms: dict[str, np.ndarray] = {}  # variant -> its hidden kernels' gradient norms, last step
        precise = config["precise_bn"]
        self.precise_batches = None
        if precise["enabled"] and "with_bn" in self.variants:
            indices = precise_bn_batches(config["seed"], len(data.train.labels), train["batch_size"], precise["images"])
            self.precise_batches = data.train.images[indices]  # (k, batch, 784) uint8
            self._bn_moments = runtime.compiled(
                lambda images: self._bn_moments_impl("with_bn", images), jit_compile=jit
            )
        self.probes, self.landscapes = {}, {}
        diagnostics_config = config["diagnostics"]
        if diagnostics_config["enabled"]:
            from bn_lab import diagnostics

            probe_images = data.validation.images[: diagnostics_config["probe_images"]]
            # Not XLA-compiled: a probe runs once per evaluation, and XLA's compile time
            # would cost more than it saves.
            self.probes = {
                v: diagnostics.Probe(config, self.networks[v], probe_images, jit=False) for v in self.variants
            }
        if diagnostics_config["landscape"]:
            from bn_lab import landscape

            self.landscapes = {
                v: landscape.Landscape(config, self.networks[v], self.loss, jit=False) for v in self.variants
            }
        self._train_chunk = {
            v: runtime.compiled(lambda *args, v=v: self._train_chunk_impl(v, *args), jit_compile=jit)
            for v in self.variants
        }
        self._evaluate = {
            v: runtime.compiled(lambda x, y, v=v: self._evaluate_impl(v, x, y), jit_compile=jit) for v in self.variants
        }
        self._single_sample = {
            (v, training): runtime.compiled(
                lambda images, v=v, training=training: self._single_sample_impl(v, images, training), jit_compile=jit
            )
            for v in self.variants
            for training in (False, True)
        }
        # Not XLA itself: it gathers a chunk's batches and runs both variants' compiled chunks.
        self._run_chunk = runtime.compiled(self._run_chunk_impl, jit_compile=False)

    # --- compiled pieces -------------------------------------------------------------

    def _loss_and_gradients(self, variant, x, y):
        network = self.networks[variant]
        with tf.GradientTape() as tape:
            loss = self.loss(network(x, training=True), y)
        return loss, tape.gradient(loss, network.parameters)

    def _hidden_gradient_norms(self, variant, gradients):
        # network.parameters begins with the kernels: the hidden layers' ones come first.
        return tf.stack([tf.norm(g) for g in gradients[: len(self.networks[variant].kernels) - 1]])

    def _train_chunk_impl(self, variant, batch_images, batch_labels, first_step):
        """Runs len(batch_images) steps of one variant.

        Returns the first step whose loss was NaN/inf (-1 if none), the norm of each hidden
        kernel's gradient in the chunk's last step (for the diagnostics; computed in every
        run, so that what is measured never changes what is trained) and, when configured,
        the inference-mode loss/accuracy on the chunk's last batch.
        A tf.cond per step to stop a diverged variant at once cost ~20% of the speed;
        instead the driver leaves it out of the next chunk, and its numbers stay null.
        """
        count = tf.shape(batch_images)[0]
        network, optimizer = self.networks[variant], self.optimizers[variant]

        def body(i, first_bad, gradient_norms):
            x = models.to_inputs(batch_images[i], self.input_shape)
            loss, gradients = self._loss_and_gradients(variant, x, batch_labels[i])
            optimizer.apply_gradients(zip(gradients, network.parameters))
            # Only in the last step: norms taken in every step slowed the MLP's XLA loop visibly.
            gradient_norms = tf.cond(
                i == count - 1, lambda: self._hidden_gradient_norms(variant, gradients), lambda: gradient_norms
            )
            return (
                i + 1,
                tf.where((first_bad < 0) & ~tf.math.is_finite(loss), first_step + i + 1, first_bad),
                gradient_norms,
            )

        hidden = len(self.networks[variant].kernels) - 1
        _, first_bad, gradient_norms = tf.while_loop(
            lambda i, *_: i < count, body, (tf.constant(0), tf.constant(-1), tf.zeros([hidden]))
        )
        if not self.config["train"]["train_eval_every"]:
            return first_bad, gradient_norms, ()
        x, y = models.to_inputs(batch_images[count - 1], self.input_shape), batch_labels[count - 1]
        logits = self.networks[variant](x, training=False)
        return (
            first_bad,
            gradient_norms,
            (self.loss(logits, y), _correct(logits, y) / tf.cast(tf.shape(y)[0], tf.float32)),
        )

    def _run_chunk_impl(self, first_step, count, variants):
        # One compiled cluster per variant: they share no state, so TensorFlow's
        # inter-op pool runs the two networks of a pair at the same time.
        indices = tf.slice(self.batch_indices, [first_step, 0], [count, -1])  # static shape for XLA
        images, labels = tf.gather(self.train_images, indices), tf.gather(self.train_labels, indices)
        return {v: self._train_chunk[v](images, labels, first_step) for v in variants}

    def _evaluate_impl(self, variant, images, labels):
        logits = self.networks[variant](models.to_inputs(images, self.input_shape), training=False)
        n = tf.cast(tf.shape(labels)[0], tf.float32)
        predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
        counts = tf.reduce_sum(tf.one_hot(predicted, models.NUM_CLASSES, dtype=tf.int32), axis=0)  # XLA has no bincount
        return self.loss(logits, labels) * n, _correct(logits, labels), counts

    def _bn_moments_impl(self, variant, batches):
        """Exact population statistics: each BN layer's input mean and biased variance, averaged over batches.

        The network runs in training mode, as when it trains, so that every layer sees inputs
        normalised with batch statistics; the population (EMA) statistics that this updates
        are restored, bit for bit, before returning. The weights are never touched.
        """
        network = self.networks[variant]
        count = tf.shape(batches)[0]
        zeros = [tf.zeros_like(s) for s in network.population_statistics]  # (mean, variance) per layer

        def body(i, sums):
            moments = []
            network(models.to_inputs(batches[i], self.input_shape), training=True, bn_moments=moments)
            flat = [value for mean_and_variance in moments for value in mean_and_variance]  # as population_statistics
            return i + 1, [total + value for total, value in zip(sums, flat)]

        with models.kept(network.population_statistics):
            _, sums = tf.while_loop(lambda i, _: i < count, body, (tf.constant(0), zeros))
        return [total / tf.cast(count, total.dtype) for total in sums]

    def _single_sample_impl(self, variant, images, training):
        network = self.networks[variant]
        count = tf.shape(images)[0]
        predictions = tf.TensorArray(tf.int32, size=count)

        def body(i, predictions):
            logits = network(models.to_inputs(images[i : i + 1], self.input_shape), training=training)
            return i + 1, predictions.write(i, tf.argmax(logits[0], output_type=tf.int32))

        with models.kept(network.population_statistics):  # a check must not change the network
            _, predictions = tf.while_loop(lambda i, _: i < count, body, (tf.constant(0), predictions))
        return predictions.stack()

    # --- driver ----------------------------------------------------------------------

    def alive_variants(self) -> tuple[str, ...]:
        return tuple(v for v in self.variants if v not in self.diverged_at)

    def evaluate(self, variant: str, split) -> tuple[float, float, float]:
        """Mean loss, accuracy and top class share of `variant`'s predictions on a whole split, inference mode."""
        loss_sum = correct = 0.0
        counts = np.zeros(models.NUM_CLASSES, np.int64)
        for start in range(0, len(split.labels), EVAL_BATCH):
            batch_loss, batch_correct, batch_counts = self._evaluate[variant](
                split.images[start : start + EVAL_BATCH], split.labels[start : start + EVAL_BATCH]
            )
            loss_sum += float(batch_loss)
            correct += float(batch_correct)
            counts += batch_counts.numpy()
        n = len(split.labels)
        return loss_sum / n, correct / n, float(counts.max() / n)

    def exact_population_statistics(self, variant: str = "with_bn") -> list[np.ndarray]:
        """(mean, variance) of every BN layer's input, averaged over the fixed precise-BN batches."""
        return [t.numpy() for t in self._bn_moments(self.precise_batches)]

    def evaluate_precise(self, variant: str, split) -> tuple[float, float, float]:
        """evaluate() with exact population statistics in place of the EMA ones, which are restored after."""
        statistics = self.networks[variant].population_statistics
        with models.kept(statistics):
            models.restore(statistics, self._bn_moments(self.precise_batches))
            return self.evaluate(variant, split)

    def weights(self) -> dict[str, np.ndarray]:
        """Every network's weights and population statistics as they are now: <variant>/layer<k>/<name>
        (a network that diverged holds what it had when it stopped: NaN or inf)."""
        return {f"{v}/{name}": array for v in self.variants for name, array in self.networks[v].named_arrays().items()}

    def single_sample_predictions(self, variant: str, images: np.ndarray, training: bool) -> np.ndarray:
        return self._single_sample[(variant, training)](images).numpy()

    def current_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The training batch of the last step taken (before any step: the first batch)."""
        indices = self.batch_indices[max(self.steps_done - 1, 0)].numpy()
        return self.data.train.images[indices], self.data.train.labels[indices]

    def first_gradient_norms(self, variant: str) -> np.ndarray:
        """Before any step: the hidden kernels' gradient norms that the first step will take.

        Run eagerly, once per network: tracing it would cost more. Training mode updates the
        population statistics; they are put back.
        """
        images, labels = self.current_batch()
        with models.kept(self.networks[variant].population_statistics):
            _, gradients = self._loss_and_gradients(variant, models.to_inputs(images, self.input_shape), labels)
        return self._hidden_gradient_norms(variant, gradients).numpy()

    def measure(self, variant: str, step: int) -> tuple[list[dict], list[np.ndarray]]:
        """Diagnostics rows (variant, step, layer, quantity, value) and per-layer histogram values.

        A kernel's gradient norm is that of the last training step (the training loop returns
        it), or before any step of the first one.
        """
        rows, histograms = [], []
        if variant in self.probes:
            gradient_norms = self.gradient_norms[variant] if self.steps_done else self.first_gradient_norms(variant)
            layers, histograms = self.probes[variant].measure(gradient_norms)
            for layer, values in enumerate(layers, start=1):
                rows += [dict(variant=variant, step=step, layer=layer, quantity=q, value=v) for q, v in values.items()]
        if variant in self.landscapes:
            found = self.landscapes[variant].probe(*self.current_batch())
            rows += [dict(variant=variant, step=step, layer="all", quantity=q, value=v) for q, v in found.items()]
        return rows, histograms

    def train_steps(self, count: int) -> dict:
        """Trains every live variant for `count` more steps; returns last-batch metrics if configured."""
        if self.steps_done + count > len(self.batch_indices):
            raise ValueError(f"only {len(self.batch_indices) - self.steps_done} of the configured steps are left")
        # count is a Python int: static shapes for XLA (a run has at most two chunk lengths).
        outputs = self._run_chunk(tf.constant(self.steps_done), count, self.alive_variants())
        self.steps_done += count
        last = {}
        for v, (first_bad, gradient_norms, last_batch) in outputs.items():
            self.gradient_norms[v] = gradient_norms.numpy()
            if int(first_bad) >= 0:
                self.diverged_at[v] = int(first_bad)
            elif last_batch:
                last[v] = (float(last_batch[0]), float(last_batch[1]))
        return last

    def run(
        self,
        on_evaluation: Callable[[int, list[Evaluation], dict], None] | None = None,
        on_trained: Callable[[list[dict], dict], None] | None = None,
    ) -> TrainResult:
        """Trains for config.train.steps with the configured evaluations, then the final checks.

        on_evaluation(step, evaluations, measurements): measurements is {variant: (diagnostics
        rows, per-layer activation inputs)} at validation evaluations with diagnostics on.
        on_trained(diagnostics rows, {variant: step it diverged at}): once training has ended,
        before the final checks; the diagnostics are complete then.
        """
        train = self.config["train"]
        steps, eval_every, train_eval_every = train["steps"], train["eval_every"], train["train_eval_every"]
        chunk = math.gcd(eval_every, train_eval_every) if train_eval_every else eval_every
        results = {v: VariantResult() for v in self.variants}
        evaluations: list[Evaluation] = []
        diagnostics: list[dict] = []
        test_every = train["test_every"]

        def record(step, split_name, split=None, last_batch=None):
            new, measurements = [], {}
            for v in self.alive_variants():
                if split is None:
                    new.append(Evaluation(v, step, split_name, *last_batch[v]))
                    continue
                new.append(Evaluation(v, step, split_name, *self.evaluate(v, split)))
                if v == "with_bn" and self.precise_batches is not None:
                    new.append(Evaluation(v, step, schema.PRECISE_BN, *self.evaluate_precise(v, split)))
                if test_every and step % test_every == 0 and step < steps:  # the final one comes after training
                    new.append(Evaluation(v, step, schema.TEST, *self.evaluate(v, self.data.test)))
                if self.probes or self.landscapes:
                    measurements[v] = self.measure(v, step)
                    diagnostics.extend(measurements[v][0])
            evaluations.extend(new)
            if on_evaluation:
                on_evaluation(step, new, measurements)

        record(0, schema.VALIDATION, self.data.validation)
        train_seconds = 0.0
        # Steady-state speed per network: a chunk of a shape not run before (its length, the
        # networks still training) is traced and compiled first, so it is left out.
        compiled, timed_steps, timed_seconds = set(), dict.fromkeys(self.variants, 0), dict.fromkeys(self.variants, 0.0)
        while self.steps_done < steps and self.alive_variants():
            count, alive = min(chunk, steps - self.steps_done), self.alive_variants()
            started = time.perf_counter()
            last_batch = self.train_steps(count)
            elapsed = time.perf_counter() - started
            train_seconds += elapsed
            if (count, alive) in compiled:
                for v in alive:
                    timed_steps[v] += count
                    timed_seconds[v] += elapsed
            compiled.add((count, alive))
            step = self.steps_done
            if step % eval_every == 0 or step == steps:
                record(step, schema.VALIDATION, self.data.validation)
            elif train_eval_every and step % train_eval_every == 0:
                record(step, schema.TRAIN_BATCH, last_batch=last_batch)

        if on_trained:
            on_trained(diagnostics, dict(self.diverged_at))
        n_single = min(train["single_samples"], len(self.data.test.labels))
        single_images = self.data.test.images[:n_single]
        single_labels = self.data.test.labels[:n_single]
        for v in self.variants:
            result = results[v]
            result.diverged = v in self.diverged_at
            result.diverged_at_step = self.diverged_at.get(v)
            result.steps_trained = (result.diverged_at_step - 1) if result.diverged else self.steps_done
            if timed_seconds[v]:
                result.steps_per_second = timed_steps[v] / timed_seconds[v]
            if result.diverged:
                continue  # the numbers of a diverged network mean nothing; they stay null
            result.final_val_loss, result.final_val_accuracy, result.final_top_class_share = self.evaluate(
                v, self.data.validation
            )
            result.test_loss, result.test_accuracy, test_share = self.evaluate(v, self.data.test)
            evaluations.append(
                Evaluation(v, self.steps_done, schema.TEST, result.test_loss, result.test_accuracy, test_share)
            )
            predictions = self.single_sample_predictions(v, single_images, training=False)
            result.predictions = predictions.tolist()
            result.single_sample_inference = float(np.mean(predictions == single_labels))
            if v == "with_bn":
                in_training_mode = self.single_sample_predictions(v, single_images, training=True)
                result.predictions_training = in_training_mode.tolist()
                result.single_sample_training = float(np.mean(in_training_mode == single_labels))
        return TrainResult(evaluations, results, train_seconds, n_single, diagnostics)
