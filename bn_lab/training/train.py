"""Training the arms of a run: every arm's network from the same initial weights, on the same
batches, concurrently.

Speed comes from running a whole chunk of steps (the steps between two evaluations) inside one
XLA-compiled tf.while_loop per arm; the chunk's batches come from bn_lab.data.batches, the checks at
each evaluation from bn_lab.training.evaluation, the diagnostics from bn_lab.probes.diagnostics,
bn_lab.probes.landscape and bn_lab.probes.ics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from bn_lab import runtime
from bn_lab.config import arms as run_arms
from bn_lab.config import footprint
from bn_lab.data.batches import ResidentBatches, precise_bn_batches
from bn_lab.nets import architecture as architectures
from bn_lab.nets import network as models
from bn_lab.store import schema
from bn_lab.training.evaluation import NO_PREDICTION, Evaluator, correct
from bn_lab.training.objectives import effective_lr_norm_power, loss_function, make_optimizer
from bn_lab.training.results import ArmResult, Evaluation, TrainResult
from bn_lab.training.timers import Timers


def _accuracy_of(predictions: np.ndarray, labels: np.ndarray) -> float | None:
    """The share of correct predictions; None where one image's logits were not numbers (no prediction)."""
    if (predictions == NO_PREDICTION).any():
        return None
    return float(np.mean(predictions == labels))


class Trainer:
    """Trains the config's arms (or those of them named in `arms`) on the same batches."""

    def __init__(self, config: dict, data, initial_weights: list[np.ndarray], arms: tuple[str, ...] | None = None):
        self.config = config
        self.data = data
        every = run_arms.of(config)
        chosen = [a for a in every if arms is None or a.name in arms]
        if arms is not None and len(chosen) != len(arms):
            raise ValueError(f"unknown arm in {arms}; this run's arms are {', '.join(a.name for a in every)}")
        self.arms = tuple(a.name for a in chosen)
        train = config["train"]
        jit = train["jit_compile"]
        # The model, for the data's images and classes (bn_lab.nets.architecture).
        self.architecture = architectures.declare(config, data.declaration.image_shape, data.declaration.classes)
        # Outside XLA (the conv net), the networks take their faster CPU formulation (bn_lab.nets.network).
        # data.standardize: the inputs are standardized with the training split's pixel statistics.
        statistics = data.pixel_statistics() if config["data"]["standardize"] else None
        self.networks = {
            a.name: models.build(config, self.architecture, initial_weights, a, statistics, fast=not jit)
            for a in chosen
        }
        self.optimizers = {a: make_optimizer(config) for a in self.arms}
        for a in self.arms:
            self.optimizers[a].build(self.networks[a].parameters)
        self.loss = loss_function(config["loss"])
        self.diverged_at: dict[str, int] = {}  # arm -> first step with a NaN/inf loss
        self.batches = ResidentBatches(config, data.train)
        self.steps_done = 0
        self.timers = Timers()  # where the run's time goes (summary.json's timings)
        self.step_sums: dict[str, tuple[int, float, float]] = {}  # arm -> steps, sum of losses, of correct
        self.gradient_norms: dict[str, np.ndarray] = {}  # arm -> its hidden kernels' gradient norms, last step
        precise = config["precise_bn"]
        self.precise_batches = None
        if precise["enabled"] and any(a.has_population_statistics for a in chosen):
            indices = precise_bn_batches(config["seed"], len(data.train.labels), train["batch_size"], precise["images"])
            self.precise_batches = data.train.images[indices]  # (k, batch, 784) uint8
        batch_stats = train["batch_size"] if config["batch_stats"]["enabled"] else None
        self.checks = Evaluator(
            self.networks, self.loss, jit, self.precise_batches, batch_stats, footprint.eval_batch_size(config)
        )
        self.probes, self.landscapes, self.shifts, self.branches = {}, {}, {}, {}
        diagnostics_config = config["diagnostics"]
        if diagnostics_config["enabled"]:
            from bn_lab.probes import diagnostics

            probe_images = data.validation.images[: diagnostics_config["probe_images"]]
            # Not XLA-compiled: a probe runs once per evaluation, and XLA's compile time
            # would cost more than it saves.
            power = effective_lr_norm_power(config)
            self.probes = {
                a: diagnostics.Probe(config, self.networks[a], probe_images, jit=False, norm_power=power)
                for a in self.arms
            }
        if diagnostics_config["landscape"]:
            from bn_lab.probes import landscape

            self.landscapes = {
                a: landscape.Landscape(config, self.networks[a], self.loss, jit=False) for a in self.arms
            }
        if diagnostics_config["ics"]:
            from bn_lab.probes import ics

            probe_images = data.validation.images[: diagnostics_config["probe_images"]]
            self.shifts = {
                a: ics.ICS(self.networks[a], self.loss, self.optimizers[a], probe_images, diagnostics_config["unit"])
                for a in self.arms
            }
        if diagnostics_config["residual"]:
            from bn_lab.probes import branch_variance

            self.branches = {a: branch_variance.BranchVariance(self.networks[a]) for a in self.arms}
            self.branch_end_layers = branch_variance.branch_end_layers(self.architecture)
        self._train_chunk = {
            a: runtime.compiled(lambda *args, a=a: self._train_chunk_impl(a, *args), jit_compile=jit) for a in self.arms
        }
        # first_gradient_norms, compiled as a step is: the first chunk reuses its XLA layer ends.
        self._first_gradient_norms = {
            a: runtime.compiled(
                lambda x, y, a=a: self._hidden_gradient_norms(a, self._loss_and_gradients(a, x, y)[1]), False
            )
            for a in self.arms
        }
        # Not XLA itself: it gathers a chunk's batches and runs every arm's compiled chunk.
        self._run_chunk = runtime.compiled(self._run_chunk_impl, jit_compile=False)

    # --- compiled pieces -------------------------------------------------------------

    def _loss_and_gradients(self, arm, x, y):
        """The training step's loss, gradients and logits (training mode)."""
        network = self.networks[arm]
        with tf.GradientTape() as tape:
            logits = network(x, training=True)
            loss = self.loss(logits, y)
        return loss, tape.gradient(loss, network.parameters), logits

    def _hidden_gradient_norms(self, arm, gradients):
        # network.parameters begins with the kernels: the hidden layers' ones come first.
        return tf.stack([tf.norm(g) for g in gradients[: len(self.networks[arm].kernels) - 1]])

    def _train_chunk_impl(self, arm, batch_images, batch_labels, first_step):
        """Runs len(batch_images) steps of one arm.

        Returns the first step whose loss was NaN/inf (-1 if none), the norm of each hidden
        kernel's gradient in the chunk's last step (for the diagnostics; computed in every
        run, so that what is measured never changes what is trained), the sums of the steps'
        own losses and correct predictions (training mode: what the steps computed anyway) and,
        when configured, the inference-mode loss/accuracy on the chunk's last batch.
        A tf.cond per step to stop a diverged arm at once cost speed (docs/performance.md);
        instead the driver leaves it out of the next chunk, and its numbers stay null.
        """
        count = tf.shape(batch_images)[0]
        network, optimizer = self.networks[arm], self.optimizers[arm]

        def body(i, first_bad, gradient_norms, loss_sum, correct_sum):
            x = network.inputs(batch_images[i])
            loss, gradients, logits = self._loss_and_gradients(arm, x, batch_labels[i])
            optimizer.apply_gradients(zip(network.step_gradients(gradients), network.parameters))
            # Only in the last step: norms taken in every step slowed the MLP's XLA loop visibly.
            gradient_norms = tf.cond(
                i == count - 1, lambda: self._hidden_gradient_norms(arm, gradients), lambda: gradient_norms
            )
            return (
                i + 1,
                tf.where((first_bad < 0) & ~tf.math.is_finite(loss), first_step + i + 1, first_bad),
                gradient_norms,
                loss_sum + loss,
                correct_sum + correct(logits, batch_labels[i]),
            )

        hidden = len(network.kernels) - 1
        zero = tf.constant(0.0)
        _, first_bad, gradient_norms, loss_sum, correct_sum = tf.while_loop(
            lambda i, *_: i < count, body, (tf.constant(0), tf.constant(-1), tf.zeros([hidden]), zero, zero)
        )
        sums = (loss_sum, correct_sum)
        if not self.config["train"]["train_eval_every"]:
            return first_bad, gradient_norms, sums, ()
        x, y = network.inputs(batch_images[count - 1]), batch_labels[count - 1]
        logits = network(x, training=False)
        return (
            first_bad,
            gradient_norms,
            sums,
            (self.loss(logits, y), correct(logits, y) / tf.cast(tf.shape(y)[0], tf.float32)),
        )

    def _run_chunk_impl(self, first_step, count, arms):
        # One compiled cluster per arm: they share no state, so TensorFlow's inter-op pool
        # runs the arms' networks at the same time.
        images, labels = self.batches.chunk(first_step, count)
        return {a: self._train_chunk[a](images, labels, first_step) for a in arms}

    # --- driver ----------------------------------------------------------------------

    def alive_arms(self) -> tuple[str, ...]:
        return tuple(a for a in self.arms if a not in self.diverged_at)

    def evaluate(self, arm: str, split) -> tuple[float, float, float]:
        """Mean loss, accuracy and top class share of `arm`'s predictions on a whole split, inference mode."""
        return self.checks.evaluate(arm, split)

    def exact_population_statistics(self, arm: str) -> list[np.ndarray]:
        """The population statistics of `arm` with exact statistics, over the fixed precise-BN batches."""
        return self.checks.exact_population_statistics(arm)

    def evaluate_precise(self, arm: str, split) -> tuple[float, float, float]:
        return self.checks.evaluate_precise(arm, split)

    def single_samples_in_training_mode(self, arm: str, images: np.ndarray) -> np.ndarray:
        return self.checks.single_images_in_training_mode(arm, images)

    def weights(self) -> dict[str, np.ndarray]:
        """Every network's weights and population statistics as they are now: <arm>/layer<k>/<name>
        (a network that diverged holds what it had when it stopped: NaN or inf)."""
        return {f"{a}/{name}": array for a in self.arms for name, array in self.networks[a].named_arrays().items()}

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The training batch of the step about to be taken, (x⁽ᵗ⁾, y⁽ᵗ⁾) at W⁽ᵗ⁾ in Santurkar et al.'s
        Definition 2.1 (after the last step: the batch a further step would take)."""
        return self.batches.at(self.steps_done)

    def first_gradient_norms(self, arm: str) -> np.ndarray:
        """Before any step: the hidden kernels' gradient norms that the first step will take, computed
        as it computes them (plain ops in place of the conv net's XLA-compiled layer ends gave norms
        up to 1.6% apart: docs/performance.md). Training mode updates the population statistics;
        they are put back."""
        images, labels = self.next_batch()
        network = self.networks[arm]
        with models.kept(network.population_statistics):
            return self._first_gradient_norms[arm](network.inputs(images), labels).numpy()

    def measure(self, arm: str, step: int) -> tuple[list[dict], list[np.ndarray]]:
        """Diagnostics rows (variant, step, layer, quantity, value) and per-layer histogram values.

        A kernel's gradient norm is that of the last training step (the loop returns it), or before any step of the first.
        """
        rows, histograms = [], []
        if arm in self.probes:
            gradient_norms = self.gradient_norms[arm] if self.steps_done else self.first_gradient_norms(arm)
            layers, histograms = self.probes[arm].measure(gradient_norms)
            for layer, values in enumerate(layers, start=1):
                rows += [dict(variant=arm, step=step, layer=layer, quantity=q, value=v) for q, v in values.items()]
        if arm in self.landscapes:
            found = self.landscapes[arm].probe(*self.next_batch())
            rows += [dict(variant=arm, step=step, layer="all", quantity=q, value=v) for q, v in found.items()]
        if arm in self.shifts:
            for layer, found in enumerate(self.shifts[arm].probe(*self.next_batch()), start=1):
                rows += [dict(variant=arm, step=step, layer=layer, quantity=q, value=v) for q, v in found.items()]
        if arm in self.branches:
            found = self.branches[arm].probe(self.next_batch()[0])
            for layer, values in zip(self.branch_end_layers, found):
                rows += [dict(variant=arm, step=step, layer=layer, quantity=q, value=v) for q, v in values.items()]
        return rows, histograms

    def train_steps(self, count: int) -> dict:
        """Trains every live arm for `count` more steps; returns last-batch metrics if configured."""
        if self.steps_done + count > len(self.batches):
            raise ValueError(f"only {len(self.batches) - self.steps_done} of the configured steps are left")
        # count is a Python int: static shapes for XLA (a run has at most two chunk lengths).
        outputs = self._run_chunk(tf.constant(self.steps_done), count, self.alive_arms())
        self.steps_done += count
        last = {}
        for a, (first_bad, gradient_norms, (loss_sum, correct_sum), last_batch) in outputs.items():
            self.gradient_norms[a] = gradient_norms.numpy()
            if int(first_bad) >= 0:
                self.diverged_at[a] = int(first_bad)
                continue
            steps, losses, correct_count = self.step_sums.get(a, (0, 0.0, 0.0))
            self.step_sums[a] = (steps + count, losses + float(loss_sum), correct_count + float(correct_sum))
            if last_batch:
                last[a] = (float(last_batch[0]), float(last_batch[1]))
        return last

    def training_steps_figures(self, arm: str) -> tuple[float, float] | None:
        """The mean loss and accuracy of the arm's own training steps since the last call (training
        mode, on the batches they trained on), or None without any; starts the next window."""
        steps, losses, correct_count = self.step_sums.pop(arm, (0, 0.0, 0.0))
        if not steps:
            return None
        return losses / steps, correct_count / (steps * self.config["train"]["batch_size"])

    def run(
        self,
        on_evaluation: Callable[[int, list[Evaluation], dict], None] | None = None,
        on_trained: Callable[[list[dict], dict], None] | None = None,
    ) -> TrainResult:
        """Trains for config.train.steps with the configured evaluations, then the final checks.

        on_evaluation(step, evaluations, measurements): measurements is {arm: (diagnostics
        rows, per-layer activation inputs)} at validation evaluations with diagnostics on.
        on_trained(diagnostics rows, {arm: step it diverged at}): once training has ended,
        before the final checks; the diagnostics are complete then.
        """
        train = self.config["train"]
        steps, eval_every, train_eval_every = train["steps"], train["eval_every"], train["train_eval_every"]
        chunk = math.gcd(eval_every, train_eval_every) if train_eval_every else eval_every
        results = {a: ArmResult() for a in self.arms}
        evaluations: list[Evaluation] = []
        diagnostics: list[dict] = []
        test_every = train["test_every"]

        timed = self.timers.timed

        def record(step, split_name, split=None, last_batch=None):
            new, measurements = [], {}
            for v in self.alive_arms():
                if split is None:
                    new.append(Evaluation(v, step, split_name, *last_batch[v]))
                    continue
                if (own := self.training_steps_figures(v)) is not None:  # the steps since the last one
                    new.append(Evaluation(v, step, schema.TRAINING_STEPS, *own))
                with timed("validation"):
                    new.append(Evaluation(v, step, split_name, *self.evaluate(v, split)))
                if self.checks.has_exact_statistics(v):
                    with timed("exact_statistics"):
                        new.append(Evaluation(v, step, schema.PRECISE_BN, *self.evaluate_precise(v, split)))
                if self.checks.has_batch_statistics(v):
                    with timed("batch_statistics"):
                        figures = self.checks.evaluate_batch_statistics(v, split)
                    new.append(Evaluation(v, step, schema.BATCH_STATS, *figures))
                if test_every and step % test_every == 0 and step < steps:  # the final one comes after training
                    with timed("test_during_training"):
                        new.append(Evaluation(v, step, schema.TEST, *self.evaluate(v, self.data.test)))
                if self.probes or self.landscapes or self.shifts or self.branches:
                    with timed("diagnostics"):
                        measurements[v] = self.measure(v, step)
                    diagnostics.extend(measurements[v][0])
            evaluations.extend(new)
            if on_evaluation:
                on_evaluation(step, new, measurements)

        record(0, schema.VALIDATION, self.data.validation)
        train_seconds = 0.0
        # Steady-state speed per network: a chunk of a shape not run before (its length, the
        # networks still training) is traced and compiled first, so it is left out.
        compiled, timed_steps, timed_seconds = set(), dict.fromkeys(self.arms, 0), dict.fromkeys(self.arms, 0.0)
        while self.steps_done < steps and self.alive_arms():
            count, alive = min(chunk, steps - self.steps_done), self.alive_arms()
            started = time.perf_counter()
            last_batch = self.train_steps(count)
            elapsed = time.perf_counter() - started
            self.timers.seconds["training_steps"] += elapsed
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
                with timed("training_batch"):
                    record(step, schema.TRAIN_BATCH, last_batch=last_batch)

        if on_trained:
            on_trained(diagnostics, dict(self.diverged_at))
        for v in self.arms:
            result = results[v]
            result.diverged = v in self.diverged_at
            result.diverged_at_step = self.diverged_at.get(v)
            result.steps_trained = (result.diverged_at_step - 1) if result.diverged else self.steps_done
            if timed_seconds[v]:
                result.steps_per_second = timed_steps[v] / timed_seconds[v]
        with timed("final_checks"):
            single = self._final_checks(results, evaluations)
        return TrainResult(evaluations, results, train_seconds, single, diagnostics)

    def _final_checks(self, results: dict, evaluations: list) -> int:
        """After training: each live arm's validation and test figures, single images and the
        batch-size curve, into results and evaluations; returns how many single images."""
        train = self.config["train"]
        n_single = min(train["single_samples"], len(self.data.test.labels))
        single_images = self.data.test.images[:n_single]
        single_labels = self.data.test.labels[:n_single]
        for v in self.arms:
            result = results[v]
            if result.diverged:
                continue  # the numbers of a diverged network mean nothing; they stay null
            # The last step's validation figures were recorded as training ended: not evaluated again.
            last = next(e for e in reversed(evaluations) if (e.variant, e.split) == (v, schema.VALIDATION))
            assert last.step == self.steps_done, (v, last.step)
            result.final_val_loss, result.final_val_accuracy = last.loss, last.accuracy
            result.final_top_class_share = last.top_class_share
            (result.test_loss, result.test_accuracy, test_share), predicted_on_test = self.checks.evaluate_each(
                v, self.data.test
            )
            evaluations.append(
                Evaluation(v, self.steps_done, schema.TEST, result.test_loss, result.test_accuracy, test_share)
            )
            predictions = predicted_on_test[:n_single]  # the test's first images: inference treats each alone
            result.predictions = predictions.tolist()
            result.single_sample_inference = _accuracy_of(predictions, single_labels)
            if self.networks[v].arm.has_population_statistics:  # else not applicable: it stays None
                in_training_mode = self.single_samples_in_training_mode(v, single_images)
                result.predictions_training = in_training_mode.tolist()
                result.single_sample_training = _accuracy_of(in_training_mode, single_labels)
                result.batch_size_curve = self.checks.batch_size_curve(
                    v, self.data.test, train["batch_size"], predicted_on_test
                )
        return n_single
