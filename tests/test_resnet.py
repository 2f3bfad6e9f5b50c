"""The residual network (model.name: resnet): its declared layers, its forward pass (plain, BN,
SkipInit and Fixup arms) against the same blocks written out in plain TensorFlow from its weights,
and a run of configs/resnet.yaml."""

import csv

import numpy as np
import pytest

from bn_lab.config import arms, declared
from bn_lab.config import loading as config
from bn_lab.nets import architecture
from tests.conftest import CONFIGS, build_network, initial_weights

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors

SMALL = {
    "model": {"name": "resnet", "blocks": [1, 2], "width": 4},
    "init": {"distribution": "he_normal"},
    "train": {"batch_size": 16, "steps": 20, "eval_every": 10, "jit_compile": False, "single_samples": 10},
    "data": {"train_limit": 400, "val_limit": 100, "test_limit": 100},
    "precise_bn": {"images": 160},
    "diagnostics": {"probe_images": 50},
    "arms": [
        {"name": "without_bn", "normalizer": None},
        {"name": "with_bn", "normalizer": "batch_norm"},
        {"name": "skip_init", "normalizer": "skip_init"},
        {"name": "fixup", "normalizer": "fixup"},
    ],
}


def test_the_declared_layers_are_stem_blocks_shortcuts_and_classifier():
    layers = declared.architecture(config.validate(SMALL)).layers
    assert [(layer.role, layer.kernel_shape, layer.output_shape, layer.stride) for layer in layers] == [
        (architecture.STEM, (3, 3, 1, 4), (28, 28, 4), 1),  # not activated: the skip path starts here
        (architecture.BRANCH, (3, 3, 4, 4), (28, 28, 4), 1),  # block 1: the shape stays, identity skip
        (architecture.BRANCH_END, (3, 3, 4, 4), (28, 28, 4), 1),
        (architecture.BRANCH, (3, 3, 4, 8), (14, 14, 8), 2),  # block 2: stage 2 halves the side
        (architecture.BRANCH_END, (3, 3, 8, 8), (14, 14, 8), 1),
        (architecture.SHORTCUT, (1, 1, 4, 8), (14, 14, 8), 2),
        (architecture.BRANCH, (3, 3, 8, 8), (14, 14, 8), 1),  # block 3
        (architecture.BRANCH_END, (3, 3, 8, 8), (14, 14, 8), 1),
        (architecture.OUTPUT, (8, 10), (10,), 1),
    ]
    assert [layer.block for layer in layers] == [None, 1, 1, 2, 2, 2, 3, 3, None]
    assert [layer.activated for layer in layers[:-1]] == [False, True, False, True, False, False, True, False]
    strided = config.validate({**SMALL, "model": {**SMALL["model"], "stem_stride": 2}})
    assert [layer.output_shape[0] for layer in declared.architecture(strided).hidden] == [14] * 3 + [7] * 5


def assert_he_variances(weights):
    """He initialization: each kernel's variance is 2 / fan in (checked where it has enough entries)."""
    for w in weights:
        if w.size >= 200:
            assert abs(w.var() / (2 / np.prod(w.shape[:-1])) - 1) < 0.2, w.shape


def plain_tf_resnet(arrays: dict, x, kind: str, epsilon=1e-3):
    """SMALL's blocks written out for an arm of `kind` (without_bn, with_bn, skip_init, fixup):
    x + branch(x), the branch conv → end → relu → conv → end, a 1×1 projection where the shape
    changes; then relu, global average pool, the classifier. A layer's end: a bias (plain,
    SkipInit), BN in training mode, or Fixup's scalars (conv(x + b₁ₐ) + b₁ᵦ; conv(h + b₂ₐ)·m + b₂ᵦ;
    the shortcut on x + b₁ₐ); SkipInit multiplies the branch's end by α. Returns (logits, [(skip, branch)])."""
    import tensorflow as tf

    def get(k, name, default=0.0):
        return arrays.get(f"layer{k}/{name}", default)

    def layer(k, h, stride, activate):
        h = tf.nn.conv2d(h + get(k, "bias_before"), arrays[f"layer{k}/kernel"], stride, "SAME")
        if kind == "with_bn":
            mean, variance = tf.nn.moments(h, [0, 1, 2])
            h = (h - mean) / tf.sqrt(variance + epsilon) * arrays[f"layer{k}/gamma"] + arrays[f"layer{k}/beta"]
        elif kind == "fixup":
            h = h * get(k, "multiplier", 1.0) + get(k, "bias_after")
        else:
            h = (h + arrays[f"layer{k}/bias"]) * get(k, "alpha", 1.0)
        return tf.nn.relu(h) if activate else h

    h = layer(1, x, 1, False)
    residuals = []
    for first, stride, shortcut in ((2, 1, None), (4, 2, 6), (7, 1, None)):
        branch = layer(first + 1, layer(first, h, stride, True), 1, False)
        shortcut_input = h + get(first, "bias_before")  # Fixup's code: the shortcut takes x + b₁ₐ
        skip = h if shortcut is None else layer(shortcut, shortcut_input, stride, False)
        residuals.append((skip, branch))
        h = skip + branch
    pooled = tf.reduce_mean(tf.nn.relu(h), axis=[1, 2])
    return pooled @ arrays["layer9/kernel"] + arrays["layer9/bias"], residuals


@pytest.mark.parametrize("arm", ["without_bn", "with_bn", "skip_init", "fixup"])
def test_the_forward_pass_is_the_blocks_written_out(tiny_mnist, arm):
    import tensorflow as tf

    c = config.validate(SMALL)
    weights = initial_weights(c)
    assert_he_variances(weights)
    network = build_network(c, weights, arms.named(c, arm))
    rng = np.random.default_rng(3)
    for variable in network.parameters:  # biases, gammas, betas and scalars away from 0 and 1
        if len(variable.shape) <= 1:
            variable.assign(variable + rng.normal(0, 0.3, variable.shape).astype(np.float32))
    for k in (3, 5, 8):  # Fixup's zero branch ends and classifier: something to compare
        network.kernels[k - 1].assign(weights[k - 1])
    network.kernels[-1].assign(weights[-1])
    arrays = {k: tf.constant(v) for k, v in network.named_arrays().items()}
    x = tf.constant(tiny_mnist.train.images[:16].reshape(16, 28, 28, 1).astype(np.float32) / 255.0)
    residuals = []
    logits = network(x, training=True, residuals=residuals)
    expected, expected_residuals = plain_tf_resnet(arrays, x, arm)
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert len(residuals) == 3
    for (skip, branch), (want_skip, want_branch) in zip(residuals, expected_residuals):
        np.testing.assert_allclose(skip.numpy(), want_skip.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(branch.numpy(), want_branch.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_configs_resnet_yaml_trains_plain_and_bn_with_its_diagnostics(tmp_path):
    from bn_lab import api
    from bn_lab.config.yaml_io import read_yaml
    from bn_lab.training import launch

    small = {k: v for k, v in SMALL.items() if k != "arms"}
    tree = config.apply_overrides(read_yaml(CONFIGS / "resnet.yaml"), config.flatten(small))
    c = config.validate(tree)
    assert c["model"]["blocks"] == [1, 2] and c["optimizer"]["learning_rate"] == 0.05
    run = api.load(launch.run_config(c, out=tmp_path / "run", progress="none"))
    summary = run.summary
    assert set(summary["variants"]) == {"without_bn", "with_bn"}
    assert summary["variants"]["with_bn"]["outcome"] in ("learned", "near chance", "collapsed")
    weights = run.weights("with_bn")
    assert weights["layer6/kernel"].shape == (1, 1, 4, 8) and "layer6/population_mean" in weights
    assert "layer2/bias" not in weights and "layer2/bias" in run.weights("without_bn")
    with open(tmp_path / "run" / "diagnostics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    layers = {int(r["layer"]) for r in rows if r["variant"] == "with_bn" and r["quantity"] == "kernel_norm"}
    assert layers == set(range(1, 9))  # every hidden layer, the shortcut included
    dead = {int(r["layer"]) for r in rows if r["quantity"] == "dead_fraction"}
    assert dead == {2, 4, 7}  # only layers that have an activation
