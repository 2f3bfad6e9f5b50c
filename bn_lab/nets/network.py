"""One arm's network, built from a model's declaration (bn_lab.nets.architecture) and explicit
initial-weight arrays (bn_lab.nets.weights), so that every arm of a run starts from the same numbers.

`build(config, architecture, initial_weights, arm)` makes the network of the architecture's family:
a stack (the MLP, the conv net, the deep linear network) here, residual blocks in
bn_lab.nets.resnet. Both keep their variables the same way, one entry per declared layer:
`kernels[k]`, `biases[k]` (None where a normalizer before the activation makes it redundant),
`norms[k]` (hidden layers, where the arm has a normalizer), so that training, the probes and
weights.npz read layer k the same in every family.

A stack with `fast=True` (what the trainer uses outside XLA) computes the same function a faster
way on CPU; `fast=False`, the default, is the plain reference the tests compare it with
(tests/test_fast_path.py). See StackNetwork.
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

from bn_lab import registry, runtime
from bn_lab.nets import normalizers
from bn_lab.nets.architecture import OUTPUT, Architecture
from bn_lab.nets.fast_conv import SMALL_CONV_SIDE, conv_as_matmul


def snapshot(variables) -> list:
    """The variables' values as they are now (tensors, inside a compiled function or eagerly)."""
    return [v.read_value() for v in variables]


def restore(variables, values) -> None:
    for variable, value in zip(variables, values):
        variable.assign(value)


@contextlib.contextmanager
def kept(variables):
    """What runs inside may change `variables` (training mode updates a network's population
    statistics); they are put back, bit for bit, after. Yields the saved values."""
    saved = snapshot(variables)
    try:
        yield saved
    finally:
        restore(variables, saved)


def to_inputs(images, input_shape, statistics: tuple | None = None):
    """uint8 images (N, height·width·channels) -> float32 network inputs in [0, 1], shaped for the
    model; with statistics (per-channel mean and std: Dataset.pixel_statistics), standardized.

    Multiplications by the float32 reciprocals, not divisions: in a graph (a training step, a
    check) TensorFlow turns a division by a constant into that multiplication, and eager code
    (a probe's inputs, converted once) divides, which moved the last bit of some pixels. Written
    so, both compute the same bits."""
    x = tf.cast(images, tf.float32) * (np.float32(1) / np.float32(255))
    if statistics is not None:
        mean = tf.constant(np.asarray(statistics[0], np.float32))
        inverse_std = tf.constant(np.float32(1) / np.asarray(statistics[1], np.float32))
        channels = len(statistics[0])
        x = tf.reshape((tf.reshape(x, (-1, channels)) - mean) * inverse_std, tf.shape(x))
    return tf.reshape(x, (-1,) + tuple(input_shape))


class Network(tf.Module):
    """What every family's network has: the variables of each declared layer, the arm's normalizer
    per hidden layer, and the end of a hidden layer (bias, normalizer, activation, as the arm's
    placement says). A family defines the forward pass, `__call__`."""

    def __init__(
        self,
        config: dict,
        architecture: Architecture,
        initial_weights: list[np.ndarray],
        arm,
        input_statistics: tuple | None = None,
    ):
        """arm: what its hidden layers have (bn_lab.config.arms); a seeded normalizer's streams are the
        run's seed, the arm's name and the layer. input_statistics: (mean, std) per channel that
        `inputs` standardizes with (data.standardize), or None."""
        # Not the arm's name: TensorFlow takes only Python identifiers for a module's, an arm's may be `no-bn`.
        super().__init__()
        self.arm = arm
        self.input_statistics = input_statistics
        self.architecture = architecture
        self.input_shape = architecture.input_shape
        self.hidden = architecture.hidden
        self.activation = registry.ACTIVATIONS.get(config["model"]["activation"])
        self.bn_after_activation = arm.after_activation
        hidden_bias = arm.hidden_bias
        if arm.normalizer:  # a residual normalizer may start from other kernels (Fixup's)
            initial_weights = arm.declared.initial_kernels(architecture, initial_weights)
        self.kernels = [tf.Variable(w, name=f"kernel_{i}") for i, w in enumerate(initial_weights)]
        self.biases = [
            tf.Variable(tf.zeros([w.shape[-1]]), name=f"bias_{i}") if (hidden_bias or layer.role == OUTPUT) else None
            for i, (w, layer) in enumerate(zip(initial_weights, architecture.layers))
        ]
        self.norms = []  # one normalizer per hidden layer (bn_lab.nets.normalizers), or none
        if arm.normalizer:
            declared = arm.declared
            self.norms = [
                normalizers.make(
                    arm.normalizer,
                    layer.output_shape,
                    **arm.options,
                    **({"seed": (config["seed"], arm.name, k)} if declared.SEEDED else {}),
                    **({"layer": layer, "blocks": architecture.blocks} if declared.RESIDUAL else {}),
                )
                for k, layer in enumerate(self.hidden, start=1)
            ]
        self.parameters = [v for v in self.kernels + self.biases if v is not None]
        # Each parameter's factor on the learning rate (1 but where a normalizer declares one).
        self.learning_rate_factors = [1.0] * len(self.parameters)
        for norm in self.norms:
            self.parameters += list(norm.trainable.values())
            self.learning_rate_factors += [norm.LEARNING_RATE_FACTORS.get(n, 1.0) for n in norm.trainable]
        self.population_statistics = [v for norm in self.norms for v in norm.population_statistics]

    def inputs(self, images):
        """uint8 images (N, height·width·channels) as this network takes them (to_inputs)."""
        return to_inputs(images, self.input_shape, self.input_statistics)

    def step_gradients(self, gradients) -> list:
        """The gradients an optimizer step takes: each scaled by its parameter's learning-rate factor
        (what training and the ICS probe's step both apply)."""
        return [g if f == 1.0 else g * f for g, f in zip(gradients, self.learning_rate_factors)]

    def parameter_layers(self) -> list[int]:
        """The layer (0-based, in declared order) of each of `parameters`: what "the layers below"
        means to the ICS probe."""
        layer_of = {}
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            for v in (kernel, bias):
                if v is not None:
                    layer_of[v.ref()] = i
        for i, norm in enumerate(self.norms):
            for v in norm.trainable.values():
                layer_of[v.ref()] = i
        return [layer_of[v.ref()] for v in self.parameters]

    def named_arrays(self) -> dict[str, np.ndarray]:
        """Every weight and population statistic by name, layers counted from 1 as in diagnostics.csv:
        layer1/kernel, layer1/bias (if the layer has one), layer1/gamma, layer1/beta (a normalizer's
        trainable variables: residual ones name theirs), layer1/population_mean,
        layer1/population_variance (BN layers), ..., the output layer last."""
        arrays = {}
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases), start=1):
            arrays[f"layer{i}/kernel"] = kernel.numpy()
            if bias is not None:
                arrays[f"layer{i}/bias"] = bias.numpy()
        for i, norm in enumerate(self.norms, start=1):
            for name, variable in norm.trainable.items():
                arrays[f"layer{i}/{name}"] = variable.numpy()
            for name, statistic in zip(norm.STATISTICS, norm.population_statistics):
                arrays[f"layer{i}/{name}"] = statistic.numpy()
        return arrays

    def _kernel(self, i: int, h):
        """Layer i's kernel applied to h: a "same" convolution, or a matmul of the flattened h."""
        layer = self.architecture.layers[i]
        if layer.kind == "conv":
            return tf.nn.conv2d(h, self.kernels[i], layer.stride, "SAME")
        return tf.matmul(tf.reshape(h, (tf.shape(h)[0], -1)) if len(h.shape) > 2 else h, self.kernels[i])

    def _layer_end(
        self,
        i: int,
        h,
        training: bool,
        bn_moments: list | None = None,
        activation_inputs: list | None = None,
        group_size: int | None = None,
        exact_statistics_pass: bool = False,
    ):
        """Everything after a hidden layer's kernel: bias, normalizer and activation, as configured.
        activation_inputs receives the input to its activation (a layer without one: its output)."""
        activated = self.hidden[i].activated
        if self.biases[i] is not None:
            h = h + self.biases[i]
        if self.norms and not (self.bn_after_activation and activated):
            h = self._batch_norm(i, h, training, bn_moments, group_size, exact_statistics_pass)
        if activation_inputs is not None:
            activation_inputs.append(h)
        if not activated:
            return h
        h = self.activation(h)
        if self.bn_after_activation:
            h = self._batch_norm(i, h, training, bn_moments, group_size, exact_statistics_pass)
        return h

    def _batch_norm(
        self,
        i: int,
        h,
        training: bool,
        bn_moments: list | None,
        group_size: int | None = None,
        exact_statistics_pass: bool = False,
    ):
        if bn_moments is not None:  # the statistics training mode normalises with (over groups, with group_size)
            bn_moments.append(self.norms[i].batch_moments(h, group_size))
        if exact_statistics_pass:
            return self.norms[i].for_exact_statistics(h, group_size)
        return self.norms[i](h, training, group_size)

    def _output(self, h):
        if len(h.shape) > 2:
            h = tf.reshape(h, (tf.shape(h)[0], -1))
        return tf.matmul(h, self.kernels[-1]) + self.biases[-1]


class StackNetwork(Network):
    """Hidden layers one after the other: kernel (+ bias) (+ normalizer) -> activation, or the
    normalizer after the activation, as the arm's placement says; then the output layer.

    fast=True computes the same function a faster way, for the conv net outside XLA (the trainer
    asks for it; numbers agree within float rounding, tests/test_fast_path.py):
      - convolutions on feature maps of at most SMALL_CONV_SIDE pixels run as matmuls
        (bn_lab.nets.fast_conv);
      - with a normalizer, each conv layer's bias/normalizer/activation part (everything between
        two convolutions: many small elementwise ops and reductions, forward and backward) is one
        XLA-compiled function, while the convolutions stay on TensorFlow's own (oneDNN) kernels:
        XLA's CPU convolutions are far slower (docs/performance.md). Without a normalizer that
        part is a bias add and a ReLU, which TensorFlow already fuses into the convolution.
    Inside an XLA-compiled function (the MLP's training loop) there is nothing to gain: pass
    fast=False there.
    """

    def __init__(self, config, architecture, initial_weights, arm, input_statistics=None, *, fast: bool = False):
        super().__init__(config, architecture, initial_weights, arm, input_statistics)
        self.fast = fast
        self._compiled_layer_ends = {}  # (layer, training) -> XLA-compiled (runtime.compiled)

    def __call__(
        self,
        x,
        training: bool,
        bn_moments: list | None = None,
        activation_inputs: list | None = None,
        group_size: int | None = None,
        exact_statistics_pass: bool = False,
    ):
        """The logits.

        bn_moments: a list that receives (mean, biased variance) of every normalizer's input;
        activation_inputs: a list that receives every hidden layer's input to its activation;
        group_size: the normalizers' groups in training mode for this call (None: their own; 0:
        the whole batch, as the batch-size curve normalizes its batches);
        exact_statistics_pass: (training mode) each normalizer normalizes with its batch moments
        and nothing else, as exact statistics are estimated (Normalizer.for_exact_statistics).
        """
        h = x
        for i, layer in enumerate(self.hidden):
            if layer.kind == "conv" and self.fast and h.shape[1] is not None and h.shape[1] <= SMALL_CONV_SIDE:
                h = conv_as_matmul(h, self.kernels[i], layer.stride)
            else:
                h = self._kernel(i, h)
            # The compiled layer end cannot hand tensors out to the lists: the plain one can.
            plain = bn_moments is None and activation_inputs is None and group_size is None
            compiled = self.fast and self.norms and layer.kind == "conv"
            if compiled and plain and not exact_statistics_pass:
                h = self._compiled_layer_end(i, training)(h)
            else:
                h = self._layer_end(i, h, training, bn_moments, activation_inputs, group_size, exact_statistics_pass)
        return self._output(h)

    def _compiled_layer_end(self, i: int, training: bool):
        key = (i, bool(training))
        if key not in self._compiled_layer_ends:
            self._compiled_layer_ends[key] = runtime.compiled(lambda h: self._layer_end(i, h, key[1]), jit_compile=True)
        return self._compiled_layer_ends[key]


def build(
    config: dict,
    architecture: Architecture,
    initial_weights: list[np.ndarray],
    arm,
    input_statistics: tuple | None = None,
    *,
    fast: bool = False,
):
    """The network of the architecture's family, for one arm (input_statistics: Network's)."""
    if architecture.family == "resnet":
        from bn_lab.nets.resnet import ResidualNetwork

        return ResidualNetwork(config, architecture, initial_weights, arm, input_statistics)
    return StackNetwork(config, architecture, initial_weights, arm, input_statistics, fast=fast)
