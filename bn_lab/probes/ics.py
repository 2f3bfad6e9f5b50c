"""Internal covariate shift as Santurkar et al. 2018 (arXiv 1805.11604, §2.2) define it, at a
validation evaluation.

Their Definition 2.1: "Let L be the loss, W₁⁽ᵗ⁾, …, W_k⁽ᵗ⁾ be the parameters of each of the k
layers and (x⁽ᵗ⁾, y⁽ᵗ⁾) be the batch of input-label pairs used to train the network at time t. We
define internal covariate shift (ICS) of activation i at time t to be the difference
‖G_{t,i} − G′_{t,i}‖₂, where G_{t,i} = ∇_{W_i⁽ᵗ⁾} L(W₁⁽ᵗ⁾, …, W_k⁽ᵗ⁾; x⁽ᵗ⁾, y⁽ᵗ⁾) and
G′_{t,i} = ∇_{W_i⁽ᵗ⁾} L(W₁⁽ᵗ⁺¹⁾, …, W_{i−1}⁽ᵗ⁺¹⁾, W_i⁽ᵗ⁾, W_{i+1}⁽ᵗ⁾, …, W_k⁽ᵗ⁾; x⁽ᵗ⁾, y⁽ᵗ⁾)."

So, at an evaluation after t steps: the batch is the one step t is about to train on
(Trainer.next_batch), G is layer i's kernel gradient at W⁽ᵗ⁾ on it, and G′ the same gradient once
the layers before i hold W⁽ᵗ⁺¹⁾, the update that batch produces with the arm's own optimizer (its
slots as they are), layers i, i+1, ... at W⁽ᵗ⁾. A layer's parameters are its kernel, bias and
normalizer's scale and offset. Recorded per hidden layer: `ics_l2` = ‖G − G′‖, `ics_relative` =
‖G − G′‖ / ‖G‖ (scale-free: comparable between arms whose gradients differ in size) and
`ics_cosine` = cos(G, G′). The first hidden layer has no layers before it: G′ = G.

Beside it, the input distribution Santurkar's §2.1 is about, as training sees it: the percentiles
of one fixed unit's input to the activation (diagnostics.unit) on the probe images in *training*
mode, with this step's batch statistics and noise (`train_unit_p15/p50/p85`). The inference-mode
percentiles of bn_lab.probes.diagnostics cannot show noisy BN's noise, which exists only in training.

Gradients are taken in training mode, as the training step takes them, and the population
statistics are put back before each one (so BN's statistics, noisy BN's noise and Batch
Renorm's r and d are those of step t). Every weight, optimizer slot and population statistic is
restored exactly afterwards: training with the probe on is bit for bit training with it off
(tests/test_ics.py, which also computes G and G′ independently from the saved weights).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bn_lab import runtime
from bn_lab.nets import network as models
from bn_lab.probes.diagnostics import percentiles
from bn_lab.store import schema

QUANTITIES = ("ics_l2", "ics_relative", "ics_cosine")


def _optimizer_variables(optimizer) -> list:
    # Keras 3 wraps its variables; the tf.Variables underneath are what can be read and assigned.
    return [getattr(v, "value", v) for v in optimizer.variables]


class ICS:
    def __init__(self, network: models.Network, loss, optimizer, probe_images: np.ndarray, unit: int):
        self.network, self.loss, self.optimizer, self.unit = network, loss, optimizer, unit
        self.probe_inputs = network.inputs(tf.constant(probe_images))  # converted once
        hidden = len(network.hidden)
        self.layers = network.parameter_layers()  # each parameter's layer, in declared (forward) order
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
        # The unit's values per layer; their percentiles are taken outside: probe().
        units = [tf.reshape(h, (-1, h.shape[-1]))[:, self.unit] for h in activation_inputs]
        x = network.inputs(batch_images)
        gradients = self._gradients(x, batch_labels, statistics, saved_statistics)
        self.optimizer.apply_gradients(zip(network.step_gradients(gradients), parameters))
        updated = models.snapshot(parameters)
        kernels = [tf.reshape(gradients[k], [-1]) for k in self.kernel_index]
        hidden = len(kernels)

        def measure(i, l2, relative, cosine):
            """G′ of hidden layer i: the layers before it at W⁽ᵗ⁺¹⁾, the others at W⁽ᵗ⁾. A loop in the
            graph, one gradient traced for every layer: tracing one per layer took a minute for 25."""
            models.restore(
                parameters, [tf.where(below < i, u, s) for u, s, below in zip(updated, saved_parameters, self.layers)]
            )
            moved = self._gradients(x, batch_labels, statistics, saved_statistics)
            # Every kernel's figures, kept for layer i alone (the kernels' shapes differ: no gather).
            found = []
            for g, k in zip(kernels, self.kernel_index):
                g_moved = tf.reshape(moved[k], [-1])
                difference, norm = tf.norm(g - g_moved), tf.norm(g)
                norms = norm * tf.norm(g_moved)
                found.append(
                    (
                        difference,
                        tf.where(norm > 0, difference / norm, np.nan),
                        tf.where(norms > 0, tf.reduce_sum(g * g_moved) / norms, np.nan),
                    )
                )
            pick = tf.range(hidden) == i
            l2, relative, cosine = (
                tf.where(pick, tf.stack(column), so_far) for column, so_far in zip(zip(*found), (l2, relative, cosine))
            )
            return i + 1, l2, relative, cosine

        empty = tf.zeros([hidden])
        _, l2, relative, cosine = tf.while_loop(
            lambda i, *_: i < hidden, measure, (tf.constant(0), empty, empty, empty)
        )
        models.restore(parameters, saved_parameters)
        models.restore(statistics, saved_statistics)
        models.restore(slots, saved_slots)
        return l2, relative, cosine, units

    def probe(self, batch_images: np.ndarray, batch_labels: np.ndarray) -> list[dict]:
        """[{ics_l2, ics_relative, ics_cosine, train_unit_p15, ...}] per hidden layer, from the first, at
        the current weights W⁽ᵗ⁾, on the batch of step t."""
        l2, relative, cosine, units = self._probe(batch_images, batch_labels)
        return [
            {
                "ics_l2": float(a),
                "ics_relative": float(r),
                "ics_cosine": float(c),
                **dict(zip(schema.TRAINING_UNIT_PERCENTILES, percentiles(unit.numpy()))),
            }
            for a, r, c, unit in zip(l2.numpy(), relative.numpy(), cosine.numpy(), units)
        ]
