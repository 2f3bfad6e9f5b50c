"""A faster way to compute a tiny convolution on CPU: as one matmul (the stack network's fast path,
bn_lab.nets.network; tests/test_fast_path.py checks it against tf.nn.conv2d)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Convolutions whose input is at most this many pixels on a side run as one matmul
# (see conv_as_matmul): in the conv net, layers 13-19 (2x2 and 1x1 feature maps).
SMALL_CONV_SIDE = 2


def tap_matrix(side: int, stride: int) -> np.ndarray:
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


def conv_as_matmul(h, kernel, stride: int):
    """conv2d(h, kernel, stride, "SAME") for a tiny feature map, as one matmul.

    The kernel is spread into a dense (side*side*in, out*out*filters) matrix, each of
    whose entries is one kernel weight or 0 (exactly: the tap matrix is 0/1), and the
    flattened input is multiplied by it: the same products as the convolution's, added
    in another order. On a 2x2 or 1x1 map almost every tap of a 3x3 convolution reads
    padding; TensorFlow's convolution kernels pay a fixed cost per call that dwarfs
    the arithmetic there, a matmul does not (docs/performance.md, "Measured choices").
    """
    side, channels, filters = h.shape[1], h.shape[3], kernel.shape[3]
    out = -(-side // stride)
    taps = tf.constant(tap_matrix(side, stride))
    dense = tf.einsum("tpq,tio->piqo", taps, tf.reshape(kernel, (9, channels, filters)))
    dense = tf.reshape(dense, (side * side * channels, out * out * filters))
    flat = tf.reshape(h, (-1, side * side * channels))
    return tf.reshape(tf.matmul(flat, dense), (-1, out, out, filters))
