"""The two networks of docs/experiments.md, built from explicit initial-weight arrays.

`initial_weights(config)` draws every kernel once with numpy; `Network(config,
initial_weights, arm)` copies those arrays into its variables, so every arm of a run
starts from the same numbers. Architectures, activations and BN
backends are chosen by name from bn_lab.registry.

`Network(..., fast=True)` (what the trainer uses) computes the same function a
faster way on CPU; `fast=False`, the default, is the plain reference the tests
compare it with (tests/test_fast_path.py). See Network.__init__.
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

from bn_lab import arms, normalizers, registry, runtime
from bn_lab.architecture import IMAGE_SIDE, NUM_CLASSES, HiddenLayer, architecture, hidden_shapes, kernel_shapes  # noqa: F401


def _fans(shape):
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def initial_weights(config: dict) -> list[np.ndarray]:
    """One float32 kernel per layer, drawn from the seed; biases start at zero (not stored)."""
    # A stream of its own, so that the batch order does not depend on the model's shape.
    rng = np.random.default_rng([config["seed"], 0])
    distribution, scale = config["init"]["distribution"], config["init"]["scale"]
    kernels = []
    for shape in kernel_shapes(config):
        if distribution == "normal":
            w = rng.normal(0.0, scale, shape)
        elif distribution == "truncated_normal":
            # Redraw values beyond two standard deviations, as tf.random.truncated_normal does.
            w = rng.normal(0.0, scale, shape)
            while (outside := np.abs(w) > 2 * scale).any():
                w[outside] = rng.normal(0.0, scale, outside.sum())
        else:  # glorot_uniform
            fan_in, fan_out = _fans(shape)
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-limit, limit, shape)
        kernels.append(w.astype(np.float32))
    return kernels


# Convolutions whose input is at most this many pixels on a side run as one matmul
# (see _conv_as_matmul): in the conv net, layers 13-19 (2x2 and 1x1 feature maps).
SMALL_CONV_SIDE = 2


def _tap_matrix(side: int, stride: int) -> np.ndarray:
    """(9, side*side, out*out) 0/1: which input pixel each 3x3 tap reads for each output pixel.

    "SAME" padding as TensorFlow's: the padding before is floor(total / 2); taps that
    fall into the padding read zeros and are simply absent.
    """
    out = -(-side // stride)
    before = max((out - 1) * stride + 3 - side, 0) // 2
    taps = np.zeros((9, side * side, out * out), np.float32)
    for oy in range(out):
        for ox in range(out):
            for ky in range(3):
                for kx in range(3):
                    iy, ix = oy * stride + ky - before, ox * stride + kx - before
                    if 0 <= iy < side and 0 <= ix < side:
                        taps[ky * 3 + kx, iy * side + ix, oy * out + ox] = 1.0
    return taps


def _conv_as_matmul(h, kernel, stride: int):
    """conv2d(h, kernel, stride, "SAME") for a tiny feature map, as one matmul.

    The kernel is spread into a dense (side*side*in, out*out*filters) matrix, each of
    whose entries is one kernel weight or 0 (exactly: the tap matrix is 0/1), and the
    flattened input is multiplied by it: the same products as the convolution's, added
    in another order. On a 2x2 or 1x1 map almost every tap of a 3x3 convolution reads
    padding; TensorFlow's convolution kernels pay a fixed cost per call that dwarfs
    the arithmetic there, a matmul does not (the conv net's with-BN step: 29 -> 32
    steps/s for 1x1 maps alone, measured with scripts/bench.py's setup).
    """
    side, channels, filters = h.shape[1], h.shape[3], kernel.shape[3]
    out = -(-side // stride)
    taps = tf.constant(_tap_matrix(side, stride))
    dense = tf.einsum("tpq,tio->piqo", taps, tf.reshape(kernel, (9, channels, filters)))
    dense = tf.reshape(dense, (side * side * channels, out * out * filters))
    flat = tf.reshape(h, (-1, side * side * channels))
    return tf.reshape(tf.matmul(flat, dense), (-1, out, out, filters))


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


def to_inputs(images, input_shape):
    """uint8 images (N, 784) -> float32 network inputs in [0, 1], shaped for the model."""
    x = tf.cast(images, tf.float32) / 255.0
    return tf.reshape(x, (-1,) + tuple(input_shape))


class Network(tf.Module):
    """One arm's network. Hidden layers: kernel (+ bias) (+ norm) -> activation, or the norm after
    the activation, as the arm's placement says; output: kernel + bias.

    fast=True computes the same function a faster way, for the conv net outside XLA
    (the trainer asks for it; numbers agree within float rounding, tests/test_fast_path.py):
      - convolutions on feature maps of at most SMALL_CONV_SIDE pixels run as matmuls
        (_conv_as_matmul);
      - with BN, each conv layer's bias/BN/activation part (everything between two
        convolutions: many small elementwise ops and reductions, forward and backward)
        is one XLA-compiled function, while the convolutions stay on TensorFlow's own
        (oneDNN) kernels: XLA's CPU convolutions are far slower (see configs/convnet_*.yaml).
        Without BN that part is a bias add and a ReLU, which TensorFlow already fuses
        into the convolution: left alone.
    Inside an XLA-compiled function (the MLP's training loop) there is nothing to gain:
    pass fast=False there.
    """

    def __init__(self, config: dict, initial_weights: list[np.ndarray], arm: arms.Arm, *, fast: bool = False):
        """arm: what its hidden layers have (bn_lab.arms); a seeded normalizer's streams are the run's
        seed, the arm's name and the layer."""
        # Not the arm's name: TensorFlow takes only Python identifiers for a module's, an arm's may be `no-bn`.
        super().__init__()
        self.arm = arm
        self.fast = fast
        self.input_shape, hidden = architecture(config)
        self.hidden = hidden
        self.activation = registry.ACTIVATIONS.get(config["model"]["activation"])
        self.bn_after_activation = arm.after_activation
        hidden_bias = arm.hidden_bias
        self.kernels = [tf.Variable(w, name=f"kernel_{i}") for i, w in enumerate(initial_weights)]
        self.biases = [
            tf.Variable(tf.zeros([w.shape[-1]]), name=f"bias_{i}") if (hidden_bias or i == len(hidden)) else None
            for i, w in enumerate(initial_weights)
        ]
        self.norms = []  # one normalizer per hidden layer (bn_lab.normalizers), or none
        if arm.normalizer:
            seeded = arm.declared.SEEDED
            self.norms = [
                normalizers.make(
                    arm.normalizer,
                    shape,
                    **arm.options,
                    **({"seed": (config["seed"], arm.name, layer)} if seeded else {}),
                )
                for layer, shape in enumerate(hidden_shapes(config), start=1)
            ]
        self.parameters = [v for v in self.kernels + self.biases if v is not None]
        for norm in self.norms:
            self.parameters += [norm.gamma, norm.beta]
        self.population_statistics = [v for norm in self.norms for v in norm.population_statistics]

        self._compiled_layer_ends = {}  # (layer, training) -> XLA-compiled (runtime.compiled)

    def named_arrays(self) -> dict[str, np.ndarray]:
        """Every weight and population statistic by name, layers counted from 1 as in diagnostics.csv:
        layer1/kernel, layer1/bias (if the layer has one), layer1/gamma, layer1/beta,
        layer1/population_mean, layer1/population_variance (BN layers), ..., the output layer last."""
        arrays = {}
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases), start=1):
            arrays[f"layer{i}/kernel"] = kernel.numpy()
            if bias is not None:
                arrays[f"layer{i}/bias"] = bias.numpy()
        for i, norm in enumerate(self.norms, start=1):
            arrays[f"layer{i}/gamma"], arrays[f"layer{i}/beta"] = norm.gamma.numpy(), norm.beta.numpy()
            for name, statistic in zip(norm.STATISTICS, norm.population_statistics):
                arrays[f"layer{i}/{name}"] = statistic.numpy()
        return arrays

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
            if layer.kind == "conv":
                if self.fast and h.shape[1] is not None and h.shape[1] <= SMALL_CONV_SIDE:
                    h = _conv_as_matmul(h, self.kernels[i], layer.stride)
                else:
                    h = tf.nn.conv2d(h, self.kernels[i], layer.stride, "SAME")
            else:
                h = tf.matmul(tf.reshape(h, (tf.shape(h)[0], -1)) if len(h.shape) > 2 else h, self.kernels[i])
            # The compiled layer end cannot hand tensors out to the lists: the plain one can.
            plain = bn_moments is None and activation_inputs is None and group_size is None
            if self.fast and self.norms and layer.kind == "conv" and plain and not exact_statistics_pass:
                h = self._compiled_layer_end(i, training)(h)
            else:
                h = self._layer_end(i, h, training, bn_moments, activation_inputs, group_size, exact_statistics_pass)
        if len(h.shape) > 2:
            h = tf.reshape(h, (tf.shape(h)[0], -1))
        return tf.matmul(h, self.kernels[-1]) + self.biases[-1]

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
        """Everything after a hidden layer's kernel: bias, BN and activation, as configured."""
        if self.biases[i] is not None:
            h = h + self.biases[i]
        if self.norms and not self.bn_after_activation:
            h = self._batch_norm(i, h, training, bn_moments, group_size, exact_statistics_pass)
        if activation_inputs is not None:
            activation_inputs.append(h)
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
            bn_moments.append(self.norms[i].batch_moments(h))
        if exact_statistics_pass:
            return self.norms[i].for_exact_statistics(h, group_size)
        return self.norms[i](h, training, group_size)

    def _compiled_layer_end(self, i: int, training: bool):
        key = (i, bool(training))
        if key not in self._compiled_layer_ends:
            self._compiled_layer_ends[key] = runtime.compiled(lambda h: self._layer_end(i, h, key[1]), jit_compile=True)
        return self._compiled_layer_ends[key]
