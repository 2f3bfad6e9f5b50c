"""What BN does inside the network, measured at every validation evaluation.

For each hidden layer, on a fixed probe set (the first N validation images, inference
mode), the input to the activation function (after BN in the BN network):
  - the 15th, 50th and 85th percentiles of one fixed unit's input (the paper's Fig. 1 b, c);
  - over all units, the mean and spread (standard deviation) of the per-unit mean and of the
    per-unit standard deviation;
  - the fraction of dead units (relu, elu: input never positive on the probe set) or of
    saturated units (sigmoid: |input| > 4, where its slope is under 7% of its peak; tanh:
    |input| > 2, likewise) on at least 95% of the probe set;
and of the layer's kernel: its mean column norm, the effective learning rate lr/‖w‖² (mean
over columns; what the optimizer's steps mean to a scale-invariant BN layer), and the norm
of its gradient on the current training batch.

Everything is computed in one compiled function per network; the gradient is taken in
training mode, like a training step, and the population statistics that this updates are
restored bit for bit, so the network is never changed (tests/test_diagnostics.py).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bn_lab import models, runtime

PERCENTILES = (15, 50, 85)
# Where each activation's slope falls under ~7% of its peak: beyond it a unit is saturated.
SATURATION = {"sigmoid": 4.0, "tanh": 2.0}
DEAD_WHEN_NEVER_POSITIVE = ("relu", "elu")
SATURATED_SHARE = 0.95  # of the probe set's values of a unit
HISTOGRAM_VALUES = 10_000  # about this many values of a layer's activation input go to TensorBoard's histogram

# The quantities of diagnostics.csv, per (variant, step, layer); layers count from 1.
UNIT = ("unit_p15", "unit_p50", "unit_p85")
SPREAD = ("unit_mean_mean", "unit_mean_std", "unit_std_mean", "unit_std_std")
KERNEL = ("kernel_norm", "effective_lr", "gradient_norm")


def inactive_quantity(activation: str) -> str | None:
    """The name of the fraction measured for this activation: dead_fraction or saturated_fraction."""
    if activation in DEAD_WHEN_NEVER_POSITIVE:
        return "dead_fraction"
    if activation in SATURATION:
        return "saturated_fraction"
    return None


def percentiles(values, qs=PERCENTILES):
    """np.percentile(values, qs) (linear interpolation) of a 1-D tensor, in compiled code."""
    ordered = tf.sort(tf.reshape(values, [-1]))
    n = tf.shape(ordered)[0]
    result = []
    for q in qs:
        position = tf.cast(n - 1, tf.float32) * (q / 100.0)
        low = tf.cast(tf.floor(position), tf.int32)
        high = tf.minimum(low + 1, n - 1)
        weight = position - tf.cast(low, tf.float32)
        result.append(tf.gather(ordered, low) * (1 - weight) + tf.gather(ordered, high) * weight)
    return tf.stack(result)


def column_norms(kernel):
    """The norm of each output unit's incoming weights (a conv kernel's columns: its filters)."""
    return tf.norm(tf.reshape(kernel, (-1, kernel.shape[-1])), axis=0)


class Probe:
    """The diagnostics of one network, on a fixed probe set."""

    def __init__(self, config: dict, network: models.Network, loss, probe_images: np.ndarray, jit: bool):
        self.network, self.loss = network, loss
        self.unit = config["diagnostics"]["unit"]
        self.activation = config["model"]["activation"]
        self.learning_rate = config["optimizer"]["learning_rate"]
        self.with_bn = bool(network.batch_norms)
        self.probe_images = tf.constant(probe_images)
        self._measure = runtime.compiled(self._measure_impl, jit_compile=jit)

    def _measure_impl(self, probe_images, batch_images, batch_labels):
        network = self.network
        activation_inputs = []
        network(models.to_inputs(probe_images, network.input_shape), training=False, activation_inputs=activation_inputs)
        layers = []
        for h in activation_inputs:
            flat = tf.reshape(h, (-1, h.shape[-1]))  # (probe values, units): a conv unit is a channel
            unit_mean, unit_std = tf.reduce_mean(flat, axis=0), tf.math.reduce_std(flat, axis=0)
            layer = {
                "unit": percentiles(flat[:, self.unit]),
                "spread": tf.stack([tf.reduce_mean(unit_mean), tf.math.reduce_std(unit_mean),
                                    tf.reduce_mean(unit_std), tf.math.reduce_std(unit_std)]),  # fmt: skip
                # Every unit of the first probe images (a stride through the flat values would
                # keep only every k-th unit).
                "histogram": tf.reshape(flat[: max(1, HISTOGRAM_VALUES // flat.shape[1])], [-1]),
            }
            if self.activation in DEAD_WHEN_NEVER_POSITIVE:
                layer["inactive"] = tf.reduce_mean(tf.cast(tf.reduce_all(flat <= 0, axis=0), tf.float32))
            elif self.activation in SATURATION:
                outside = tf.reduce_mean(tf.cast(tf.abs(flat) > SATURATION[self.activation], tf.float32), axis=0)
                layer["inactive"] = tf.reduce_mean(tf.cast(outside >= SATURATED_SHARE, tf.float32))
            layers.append(layer)

        # The gradient of the current batch's loss, as a training step sees it (training mode),
        # then the population statistics that training mode updated are put back.
        saved = [s.read_value() for s in network.population_statistics]
        hidden_kernels = network.kernels[:-1]
        with tf.GradientTape() as tape:
            loss = self.loss(network(models.to_inputs(batch_images, network.input_shape), training=True), batch_labels)
        gradients = tape.gradient(loss, hidden_kernels)
        for statistic, value in zip(network.population_statistics, saved):
            statistic.assign(value)
        for layer, kernel, gradient in zip(layers, hidden_kernels, gradients):
            norms = column_norms(kernel)
            layer["kernel"] = tf.stack(
                [tf.reduce_mean(norms), tf.reduce_mean(self.learning_rate / tf.square(norms)), tf.norm(gradient)]
            )
        return layers

    def measure(self, batch_images: np.ndarray, batch_labels: np.ndarray) -> tuple[list[dict], list[np.ndarray]]:
        """(per layer {quantity: value}, per layer the activation inputs for a histogram)."""
        layers = self._measure(self.probe_images, batch_images, batch_labels)
        values, histograms = [], []
        for layer in layers:
            row = dict(zip(UNIT, layer["unit"].numpy().tolist()))
            row.update(zip(SPREAD, layer["spread"].numpy().tolist()))
            kernel = layer["kernel"].numpy().tolist()
            row.update(zip(KERNEL, kernel))
            if not self.with_bn:  # lr/‖w‖² is what a step means only to a scale-invariant (BN) layer
                del row["effective_lr"]
            if "inactive" in layer:
                row[inactive_quantity(self.activation)] = float(layer["inactive"])
            values.append(row)
            histograms.append(layer["histogram"].numpy())
        return values, histograms
