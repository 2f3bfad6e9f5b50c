"""Internal covariate shift as Santurkar et al. 2018 (§2.2) measure it, at a validation evaluation.

For each hidden layer l: G is the gradient of the current training batch's loss with respect to
layer l's kernel; G' is the same gradient after the layers *before* l have taken this step's
update (the arm's own optimizer applied to the gradients of every parameter, then every layer
from l on put back where it was). ICS is how far the update of the layers below moves the
gradient a layer sees: `ics_l2` = ‖G − G'‖ and `ics_cosine` = cos(G, G'). The first hidden layer
has no layers before it: G' = G.

Beside it, the input distribution Santurkar's §2.1 is about, as training sees it: the percentiles
of one fixed unit's input to the activation (diagnostics.unit) on the probe images in *training*
mode, with this step's batch statistics and noise (`train_unit_p15/p50/p85`). The inference-mode
percentiles of bn_lab.diagnostics cannot show noisy BN's noise, which exists only in training.

Gradients are taken in training mode, as a training step takes them, and the population
statistics are put back before each one (so BN's statistics, noisy BN's noise and Batch
Renorm's r and d are those of the step being measured). Every weight, optimizer slot and
population statistic is restored exactly afterwards: training with the probe on is bit for bit
training with it off (tests/test_ics.py).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bn_lab import models, runtime, schema
from bn_lab.diagnostics import percentiles

QUANTITIES = ("ics_l2", "ics_cosine")


def _optimizer_variables(optimizer) -> list:
    # Keras 3 wraps its variables; the tf.Variables underneath are what can be read and assigned.
    return [getattr(v, "value", v) for v in optimizer.variables]


class ICS:
    def __init__(self, network: models.Network, loss, optimizer, probe_images: np.ndarray, unit: int):
        self.network, self.loss, self.optimizer, self.unit = network, loss, optimizer, unit
        self.probe_inputs = models.to_inputs(tf.constant(probe_images), network.input_shape)  # converted once
        hidden = len(network.hidden)
        # Each parameter's layer: hidden layers 0..hidden-1, the output layer `hidden`.
        layer_of = {}
        for i, (kernel, bias) in enumerate(zip(network.kernels, network.biases)):
            for v in (kernel, bias):
                if v is not None:
                    layer_of[v.ref()] = i
        for i, norm in enumerate(network.norms):
            layer_of[norm.gamma.ref()] = layer_of[norm.beta.ref()] = i
        self.layers = [layer_of[v.ref()] for v in network.parameters]
        refs = [v.ref() for v in network.parameters]  # by identity: == on variables compares values
        self.kernel_index = [refs.index(k.ref()) for k in network.kernels[:hidden]]
        self._probe = runtime.compiled(self._probe_impl, jit_compile=False)

    def _gradients(self, x, y, statistics, saved_statistics):
        models.restore(statistics, saved_statistics)
        with tf.GradientTape() as tape:
            loss = self.loss(self.network(x, training=True), y)
        return tape.gradient(loss, self.network.parameters)

    def _probe_impl(self, batch_images, batch_labels):
        network = self.network
        parameters, statistics = network.parameters, network.population_statistics
        slots = _optimizer_variables(self.optimizer)
        saved_parameters, saved_statistics, saved_slots = (
            models.snapshot(parameters),
            models.snapshot(statistics),
            models.snapshot(slots),
        )
        models.restore(statistics, saved_statistics)
        activation_inputs = []
        network(self.probe_inputs, training=True, activation_inputs=activation_inputs)
        bands = [percentiles(tf.reshape(h, (-1, h.shape[-1]))[:, self.unit]) for h in activation_inputs]
        x = models.to_inputs(batch_images, network.input_shape)
        gradients = self._gradients(x, batch_labels, statistics, saved_statistics)
        self.optimizer.apply_gradients(zip(gradients, parameters))
        updated = models.snapshot(parameters)
        l2, cosine = [], []
        for layer, k in enumerate(self.kernel_index):
            models.restore(
                parameters, [u if below < layer else s for u, s, below in zip(updated, saved_parameters, self.layers)]
            )
            moved = self._gradients(x, batch_labels, statistics, saved_statistics)[k]
            g, g_moved = tf.reshape(gradients[k], [-1]), tf.reshape(moved, [-1])
            l2.append(tf.norm(g - g_moved))
            norms = tf.norm(g) * tf.norm(g_moved)
            cosine.append(tf.where(norms > 0, tf.reduce_sum(g * g_moved) / norms, tf.constant(np.nan, tf.float32)))
        models.restore(parameters, saved_parameters)
        models.restore(statistics, saved_statistics)
        models.restore(slots, saved_slots)
        return tf.stack(l2), tf.stack(cosine), tf.stack(bands)

    def probe(self, batch_images: np.ndarray, batch_labels: np.ndarray) -> list[dict]:
        """[{ics_l2, ics_cosine, train_unit_p15, ...}] per hidden layer, from the first, at the current weights."""
        l2, cosine, bands = (t.numpy() for t in self._probe(batch_images, batch_labels))
        return [
            {"ics_l2": float(a), "ics_cosine": float(c), **dict(zip(schema.TRAINING_UNIT_PERCENTILES, map(float, b)))}
            for a, c, b in zip(l2, cosine, bands)
        ]
