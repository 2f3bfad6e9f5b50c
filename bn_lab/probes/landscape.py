"""The loss landscape along the gradient (Santurkar et al. 2018, §3.1), at a validation evaluation.

Their definition: "at a particular training step, we measure the variation (shaded region) in
loss (a) and ℓ2 changes in the gradient (b) as we move in the gradient direction" (Fig. 4), and
the "effective" β-smoothness as the maximum difference in gradient over distance moved in that
direction. "At a particular training step" is the step about to be taken: its batch is the one
that step trains on (Trainer.next_batch), as in the ICS probe's Definition 2.1.

From the current weights w and the gradient g of that batch's loss, step to
w − η·g for each η in MULTIPLES × the learning rate and record, on that same batch:
  - loss variation: the range (max − min) of the loss over the steps;
  - gradient predictiveness: the largest ℓ2 change of the gradient, max ‖g(w − η·g) − g‖;
  - effective β-smoothness: the largest gradient change per distance moved,
    max ‖g(w − η·g) − g‖ / ‖η·g‖.
Losses and gradients are taken in training mode, as a training step takes them. Every
weight and population statistic is restored exactly afterwards: training with the probe on
is bit for bit training with it off (tests/test_diagnostics.py).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bn_lab import runtime
from bn_lab.nets import network as models

# Step sizes as multiples of the learning rate: Santurkar et al. use [0.5, 4] x lr.
MULTIPLES = tuple(float(m) for m in np.geomspace(0.5, 4.0, 8))
QUANTITIES = ("loss_variation", "gradient_predictiveness", "beta_smoothness")


class Landscape:
    def __init__(self, config: dict, network: models.Network, loss, jit: bool, multiples=MULTIPLES):
        self.network, self.loss = network, loss
        self.steps = [m * config["optimizer"]["learning_rate"] for m in multiples]
        self._probe = runtime.compiled(self._probe_impl, jit_compile=jit)

    def _loss_and_gradient(self, x, y):
        with tf.GradientTape() as tape:
            loss = self.loss(self.network(x, training=True), y)
        return loss, tape.gradient(loss, self.network.parameters)

    def _probe_impl(self, batch_images, batch_labels, steps):
        network = self.network
        parameters, statistics = network.parameters, network.population_statistics
        saved_parameters, saved_statistics = models.snapshot(parameters), models.snapshot(statistics)
        x = network.inputs(batch_images)
        loss, gradient = self._loss_and_gradient(x, batch_labels)
        flat = tf.concat([tf.reshape(g, [-1]) for g in gradient], axis=0)

        def step_to(i, losses, changes):  # w - η_i·g, from the saved weights and statistics
            models.restore(parameters, [start - steps[i] * g for start, g in zip(saved_parameters, gradient)])
            models.restore(statistics, saved_statistics)
            moved_loss, moved_gradient = self._loss_and_gradient(x, batch_labels)
            change = tf.norm(tf.concat([tf.reshape(g, [-1]) for g in moved_gradient], axis=0) - flat)
            return i + 1, losses.write(i, moved_loss), changes.write(i, change)

        # A loop in the graph, not one traced copy per step size: tracing was most of the probe's cost.
        count = tf.shape(steps)[0]
        empty = tf.TensorArray(tf.float32, size=count)
        _, losses, changes = tf.while_loop(lambda i, *_: i < count, step_to, (tf.constant(0), empty, empty))
        models.restore(parameters, saved_parameters)
        models.restore(statistics, saved_statistics)
        losses, changes = losses.stack(), changes.stack()
        distances = tf.abs(steps) * tf.norm(flat)
        return loss, flat, losses, changes, distances

    def probe(self, batch_images: np.ndarray, batch_labels: np.ndarray) -> dict:
        """{loss_variation, gradient_predictiveness, beta_smoothness} at the current weights."""
        _, _, losses, changes, distances = self._probe(batch_images, batch_labels, tf.constant(self.steps, tf.float32))
        losses, changes, distances = losses.numpy(), changes.numpy(), distances.numpy()
        smoothness = changes / np.maximum(distances, np.finfo(np.float32).tiny)
        return {
            "loss_variation": float(losses.max() - losses.min()),
            "gradient_predictiveness": float(changes.max()),
            "beta_smoothness": float(smoothness.max()),
            # The other edges of landscape.png's bands: over the step sizes, min to max.
            "loss_min": float(losses.min()),
            "loss_max": float(losses.max()),
            "gradient_change_min": float(changes.min()),
            "beta_smoothness_min": float(smoothness.min()),
        }

    def at(self, batch_images: np.ndarray, batch_labels: np.ndarray, steps) -> tuple:
        """(loss, flat gradient, losses, gradient changes, distances) for explicit step sizes (tests: η = 0)."""
        return tuple(t.numpy() for t in self._probe(batch_images, batch_labels, tf.constant(steps, tf.float32)))
