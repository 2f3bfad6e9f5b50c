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
over columns; what the optimizer's steps mean to a scale-invariant BN layer; lr/‖w‖ for
Adam, whose steps do not scale with the gradient: bn_lab.training.objectives), and the norm
of its gradient in the last training step (the training loop returns it: taking it again
here would trace a second gradient per network).

Everything else is computed in one compiled function per network (the unit's percentiles, from
the values it returns, by numpy), in inference mode, which only reads the network: it is never
changed (tests/test_diagnostics.py).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bn_lab import runtime
from bn_lab.nets import network as models
from bn_lab.store import schema

PERCENTILES = (15, 50, 85)
# Where each activation's slope falls under ~7% of its peak: beyond it a unit is saturated.
SATURATION = {"sigmoid": 4.0, "tanh": 2.0}
DEAD_WHEN_NEVER_POSITIVE = ("relu", "elu")
SATURATED_SHARE = 0.95  # of the probe set's values of a unit
# About this many values of a layer's activation input go to TensorBoard's histogram (30
# buckets): its cost grows with the values, at every evaluation (docs/performance.md).
HISTOGRAM_VALUES = 3_000

# The quantities of diagnostics.csv, per (variant, step, layer); layers count from 1.
UNIT = schema.UNIT_PERCENTILES
SPREAD = ("unit_mean_mean", "unit_mean_std", "unit_std_mean", "unit_std_std")
KERNEL = ("kernel_norm", "effective_lr", "gradient_norm")


def inactive_quantity(activation: str) -> str | None:
    """The name of the fraction measured for this activation: dead_fraction or saturated_fraction."""
    if activation in DEAD_WHEN_NEVER_POSITIVE:
        return "dead_fraction"
    if activation in SATURATION:
        return "saturated_fraction"
    return None


def percentiles(values) -> list[float]:
    """The PERCENTILES of a unit's values: numpy's (linear interpolation), outside compiled code,
    where selecting costs a fraction of a sort (the conv net's unit holds 784,000 probe values)."""
    return np.percentile(values, PERCENTILES).tolist()


def column_norms(kernel):
    """The norm of each output unit's incoming weights (a conv kernel's columns: its filters)."""
    return tf.norm(tf.reshape(kernel, (-1, kernel.shape[-1])), axis=0)


def invariant_norms(kernel, invariance: str, groups: int = 1):
    """The norms of the parts of a kernel that a normalizer lets be rescaled freely (its declared
    SCALE_INVARIANCE): each column, the whole matrix (Frobenius), or each group of columns."""
    if invariance == "matrix":
        return tf.norm(kernel)[None]
    if invariance == "group":
        columns = tf.reshape(kernel, (-1, kernel.shape[-1]))
        grouped = tf.reshape(columns, (columns.shape[0], groups, -1))
        return tf.norm(tf.transpose(grouped, (1, 0, 2)), axis=(1, 2))
    return column_norms(kernel)


class Probe:
    """The diagnostics of one network, on a fixed probe set."""

    def __init__(self, config: dict, network: models.Network, probe_images: np.ndarray, jit: bool, norm_power: int):
        """norm_power: p of the optimizer's effective learning rate lr/‖w‖^p (bn_lab.training.objectives)."""
        self.network = network
        self.unit = config["diagnostics"]["unit"]
        self.activation = config["model"]["activation"]
        self.learning_rate = config["optimizer"]["learning_rate"]
        self.norm_power = norm_power
        # lr/‖w‖^p is what a step means only to a scale-invariant (normalized) layer: which part
        # of the kernel w is, the arm's normalizer declares.
        self.invariance = network.arm.scale_invariance
        self.groups = [norm.groups for norm in network.norms]
        self.probe_inputs = network.inputs(tf.constant(probe_images))  # converted once
        self._measure = runtime.compiled(self._measure_impl, jit_compile=jit)

    def _measure_impl(self, probe_inputs):
        network = self.network
        activation_inputs = []
        network(probe_inputs, training=False, activation_inputs=activation_inputs)
        layers = []
        for k, (h, kernel) in enumerate(zip(activation_inputs, network.kernels)):
            flat = tf.reshape(h, (-1, h.shape[-1]))  # (probe values, units): a conv unit is a channel
            unit_mean, unit_std = tf.reduce_mean(flat, axis=0), tf.math.reduce_std(flat, axis=0)
            norms = column_norms(kernel)
            # A column-invariant layer (BN) divides by the column norms already taken.
            invariant = (
                invariant_norms(kernel, self.invariance, self.groups[k])
                if self.invariance not in (None, "column")
                else norms
            )
            layer = {
                "unit": flat[:, self.unit],  # its percentiles: measure()
                "spread": tf.stack(
                    [
                        tf.reduce_mean(unit_mean),
                        tf.math.reduce_std(unit_mean),
                        tf.reduce_mean(unit_std),
                        tf.math.reduce_std(unit_std),
                    ]
                ),
                "kernel": tf.stack(
                    [tf.reduce_mean(norms), tf.reduce_mean(self.learning_rate / invariant**self.norm_power)]
                ),
                # Every unit of evenly spaced rows of the probe values (a stride through the flat
                # values would keep only every k-th unit; the first rows, of a conv layer, would
                # be the top of the first image).
                "histogram": tf.reshape(flat[:: max(1, flat.shape[0] * flat.shape[1] // HISTOGRAM_VALUES)], [-1]),
            }
            if not network.hidden[k].activated:  # a residual branch's end, a shortcut: no activation to die
                pass
            elif self.activation in DEAD_WHEN_NEVER_POSITIVE:
                layer["inactive"] = tf.reduce_mean(tf.cast(tf.reduce_all(flat <= 0, axis=0), tf.float32))
            elif self.activation in SATURATION:
                outside = tf.reduce_mean(tf.cast(tf.abs(flat) > SATURATION[self.activation], tf.float32), axis=0)
                layer["inactive"] = tf.reduce_mean(tf.cast(outside >= SATURATED_SHARE, tf.float32))
            layers.append(layer)
        return layers

    def measure(self, gradient_norms) -> tuple[list[dict], list[np.ndarray]]:
        """(per layer {quantity: value}, per layer the activation inputs for a histogram).

        gradient_norms: the norm of each hidden kernel's gradient, as training took it.
        """
        values, histograms = [], []
        for layer, gradient_norm in zip(self._measure(self.probe_inputs), gradient_norms):
            row = dict(zip(UNIT, percentiles(layer["unit"].numpy())))
            row.update(zip(SPREAD, layer["spread"].numpy().tolist()))
            row.update(zip(KERNEL, layer["kernel"].numpy().tolist() + [float(gradient_norm)]))
            if not self.invariance:
                del row["effective_lr"]
            if "inactive" in layer:
                row[inactive_quantity(self.activation)] = float(layer["inactive"])
            values.append(row)
            histograms.append(layer["histogram"].numpy())
        return values, histograms
