"""BN in residual networks: SkipInit and Fixup against their papers' definitions, computed
independently; the branch-variance probe against numpy and against De & Smith's 1/(ℓ+1); the
probe never changes training; configs/residual.yaml; what the config refuses."""

import csv
import json

import numpy as np
import pytest

from bn_lab.config import arms, declared
from bn_lab.config import loading as config
from bn_lab.config.yaml_io import ConfigError
from bn_lab.nets import architecture
from tests.conftest import CONFIGS, build_network, initial_weights, tiny_mlp_config

pytestmark = pytest.mark.tensorflow

ARMS = [
    {"name": "plain", "normalizer": None},
    {"name": "bn", "normalizer": "batch_norm"},
    {"name": "skip_init", "normalizer": "skip_init"},
    {"name": "fixup", "normalizer": "fixup"},
]


def resnet_config(blocks, width=8, stem_stride=2, **sections) -> dict:
    return config.validate(
        {
            "model": {"name": "resnet", "blocks": blocks, "width": width, "stem_stride": stem_stride},
            "init": {"distribution": "he_normal"},
            "train": {"batch_size": 64, "steps": 10, "eval_every": 5, "jit_compile": False, "single_samples": 10},
            "data": {"train_limit": 640, "val_limit": 100, "test_limit": 100},
            "precise_bn": {"images": 128},
            "diagnostics": {"probe_images": 50, "residual": True},
            "arms": ARMS,
            **sections,
        }
    )


def images(tiny_mnist, n=64):
    import tensorflow as tf

    return tf.constant(tiny_mnist.train.images[:n].reshape(n, 28, 28, 1).astype(np.float32) / 255.0)


def test_skip_init_starts_every_block_as_the_identity_map(tiny_mnist):
    c = resnet_config([3, 2])
    network = build_network(c, initial_weights(c), arms.named(c, "skip_init"))
    residuals = []
    x = images(tiny_mnist)
    network(x, training=True, residuals=residuals)
    assert len(residuals) == 5
    for _, branch in residuals:
        assert not branch.numpy().any()  # α = 0: the branch adds exactly nothing
    # The identity blocks: each one's output is its input, bit for bit (the next block's skip path).
    for (skip, branch), (next_skip, _) in zip(residuals[:2], residuals[1:3]):
        np.testing.assert_array_equal((skip + branch).numpy(), next_skip.numpy())
    alphas = {k: v for k, v in network.named_arrays().items() if k.endswith("/alpha")}
    ends = [k for k, layer in enumerate(declared.architecture(c).hidden, 1) if layer.role == architecture.BRANCH_END]
    assert sorted(alphas) == sorted(f"layer{k}/alpha" for k in ends) and all(v == 0 for v in alphas.values())


def test_fixup_initialization_is_the_papers_rule(tiny_mnist):
    """Zhang et al. 2019: classifier and each branch's last layer 0; the branch's other layer scaled
    by L^(−1/(2m−2)) = L^(−1/2) for m = 2 (L: the residual branches); scalar biases at 0, multipliers at 1."""
    c = resnet_config([4, 2], width=16)
    shared = initial_weights(c)
    network = build_network(c, shared, arms.named(c, "fixup"))
    layers = declared.architecture(c).layers
    branches = sum(layer.role == architecture.BRANCH_END for layer in layers)
    assert branches == 6
    for k, (layer, kernel) in enumerate(zip(layers, network.kernels)):
        value = kernel.numpy()
        if layer.role in (architecture.BRANCH_END, architecture.OUTPUT):
            assert not value.any(), layer
        elif layer.role == architecture.BRANCH:
            np.testing.assert_allclose(value, shared[k] / np.sqrt(6), rtol=1e-6)
            he = 2 / np.prod(layer.kernel_shape[:-1])  # He (fan in) variance, scaled by 1/L
            assert abs(value.var() / (he / 6) - 1) < 4 * np.sqrt(2 / value.size), layer
        else:  # the stem and the shortcuts: as every arm starts
            np.testing.assert_array_equal(value, shared[k])
    named = network.named_arrays()
    scalars = {k: v for k, v in named.items() if v.shape == ()}
    # Per block 2 + 3 scalars (bias before and after conv₁; bias before, multiplier, bias after conv₂), the stem's bias.
    assert len(scalars) == 5 * 6 + 1
    assert all(v == (1.0 if k.endswith("multiplier") else 0.0) for k, v in scalars.items())
    assert not any(k.endswith("/bias") for k in named if not k.startswith(f"layer{len(layers)}/"))
    logits = network(images(tiny_mnist), training=True)
    assert not logits.numpy().any()  # a zero classifier: every logit 0 at initialization
    # The authors' script: the scalar biases and multipliers learn at a tenth of the learning rate.
    factors = dict(zip((v.ref() for v in network.parameters), network.learning_rate_factors))
    scalar_refs = {v.ref() for norm in network.norms for v in norm.trainable.values()}
    assert {factors[r] for r in scalar_refs} == {0.1} and set(factors.values()) == {0.1, 1.0}
    ones = [np.ones(v.shape, np.float32) for v in network.parameters]
    stepped = network.step_gradients(ones)
    assert [float(np.max(g)) for g in stepped] == [factors[v.ref()] for v in network.parameters]


def test_the_branch_variance_probe_is_the_variances_of_the_blocks_and_bn_gives_one_over_l_plus_one(tiny_mnist):
    from bn_lab.probes import branch_variance

    c = resnet_config([8], width=16)
    shared = initial_weights(c)
    x_images = tiny_mnist.train.images[:64]
    found = {}
    for arm in ("plain", "bn", "skip_init", "fixup"):
        network = build_network(c, shared, arms.named(c, arm))
        before = [v.numpy().copy() for v in network.population_statistics]
        found[arm] = [b["branch_share"] for b in branch_variance.BranchVariance(network).probe(x_images)]
        for v, saved in zip(network.population_statistics, before):
            np.testing.assert_array_equal(v.numpy(), saved)  # training mode's statistics are put back
        residuals = []
        network(images(tiny_mnist), training=True, residuals=residuals)
        for (skip, branch), share in zip(residuals, found[arm]):  # numpy: per channel, then the mean
            s, b = skip.numpy().reshape(-1, 16), branch.numpy().reshape(-1, 16)
            np.testing.assert_allclose(share, b.var(axis=0).mean() / (s + b).var(axis=0).mean(), rtol=1e-4)
    share_bn = np.array(found["bn"])
    predicted = 1 / (np.arange(1, 9) + 1)
    assert np.all(np.abs(share_bn / predicted - 1) < 0.3), share_bn  # De & Smith: about 1/(ℓ+1)
    assert np.all(np.diff(share_bn) < 0)
    assert min(found["plain"]) > 0.3  # unnormalized: the branch's share does not shrink with depth
    assert found["skip_init"] == [0.0] * 8 and found["fixup"] == [0.0] * 8


def test_stage_positions_start_over_at_a_projection():
    from bn_lab.probes import branch_variance

    a = declared.architecture(resnet_config([3, 2, 2]))
    assert branch_variance.stage_positions(a) == [1, 2, 3, 1, 2, 1, 2]
    assert branch_variance.branch_end_layers(a) == [3, 5, 7, 9, 12, 14, 17]


@pytest.mark.parametrize("normalizer", ["skip_init", "fixup"])
def test_a_residual_normalizer_on_a_stack_is_refused_in_one_line(normalizer):
    tree = tiny_mlp_config()
    tree["arms"] = [{"name": "a", "normalizer": normalizer}]
    with pytest.raises(ConfigError) as error:
        config.validate(tree)
    assert str(error.value) == (
        f"config: arms[0] (a): normalizer {normalizer} belongs in residual blocks, and model.name is mlp; "
        "use it with model.name: resnet"
    )


def test_the_branch_variance_probe_on_a_stack_is_refused_in_one_line():
    with pytest.raises(ConfigError) as error:
        config.validate({**tiny_mlp_config(), "diagnostics": {"enabled": True, "residual": True}})
    assert str(error.value) == (
        "config: diagnostics.residual measures residual blocks, and model.name is mlp; "
        "use it with model.name: resnet, or set diagnostics.residual: false"
    )


@pytest.mark.slow
def test_residual_yaml_trains_the_four_arms_and_the_probe_changes_nothing(tmp_path):
    """configs/residual.yaml, small: the four arms train, diagnostics.csv holds each block's
    branch share at its branch-end layer, summary.json and residual_variance.png show it; with the
    probe off, the weights and metrics are bit for bit the same."""
    from bn_lab import api
    from bn_lab.config.yaml_io import read_yaml
    from bn_lab.training import launch

    small = {
        "model.blocks": [2],
        "model.width": 8,
        "train.steps": 10,
        "train.eval_every": 5,
        "train.single_samples": 10,
        "data.train_limit": 640,
        "data.val_limit": 100,
        "data.test_limit": 100,
        "precise_bn.enabled": False,  # not what is tested: the probe and the arms' weights are
        "diagnostics.probe_images": 50,
    }
    tree = config.apply_overrides(read_yaml(CONFIGS / "residual.yaml"), small)
    c = config.validate(tree)
    assert [a.normalizer for a in arms.of(c)] == [None, "batch_norm", "skip_init", "fixup"]
    on = api.load(launch.run_config(c, out=tmp_path / "on", progress="none"))
    off_config = config.validate(config.apply_overrides(tree, {"diagnostics.residual": False}))
    off = api.load(launch.run_config(off_config, out=tmp_path / "off", progress="none"))
    for arm in ("plain", "bn", "skip_init", "fixup"):
        for name, array in on.weights(arm).items():
            np.testing.assert_array_equal(array, off.weights(arm)[name], err_msg=f"{arm} {name}")
    assert (tmp_path / "on" / "metrics.csv").read_bytes() == (tmp_path / "off" / "metrics.csv").read_bytes()
    with open(tmp_path / "on" / "diagnostics.csv", newline="") as f:
        shares = [r for r in csv.DictReader(f) if r["quantity"] == "branch_share"]
    assert {r["layer"] for r in shares} == {"3", "5"}  # each block's branch end
    assert {r["step"] for r in shares} == {"0", "5", "10"}
    summary = json.loads((tmp_path / "on" / "summary.json").read_text())
    bn = summary["variants"]["bn"]["residual"]
    measured = [float(r["value"]) for r in shares if r["variant"] == "bn" and r["step"] == "0"]
    assert bn["branch_share_initial"] == measured and bn["final_step"] == 10
    assert summary["variants"]["skip_init"]["residual"]["branch_share_initial"] == [0.0, 0.0]
    from matplotlib import colors, image

    pixels = image.imread(tmp_path / "on" / "residual_variance.png")[..., :3].reshape(-1, 3)
    for arm in summary["arms"]:  # each arm's line, in its color
        assert (abs(pixels - colors.to_rgb(arm["color"])).max(axis=1) < 0.02).sum() > 20, arm
    assert not (tmp_path / "off" / "residual_variance.png").exists()


def test_standardized_inputs_are_each_channels_pixels_less_the_training_mean_over_the_std(tiny_mnist):
    import tensorflow as tf

    from bn_lab.nets import network as models

    mean, std = tiny_mnist.pixel_statistics()
    pixels = tiny_mnist.train.images.astype(np.float64) / 255
    np.testing.assert_allclose([mean[0], std[0]], [pixels.mean(), pixels.std()], rtol=1e-12)
    c = resnet_config([1])
    network = build_network(c, initial_weights(c), arms.named(c, "bn"), input_statistics=(mean, std))
    x = network.inputs(tf.constant(tiny_mnist.train.images[:4]))
    expected = ((tiny_mnist.train.images[:4] / 255 - mean[0]) / std[0]).reshape(4, 28, 28, 1)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-6)
    # Colour images: each channel its own statistics, whatever shape the model takes.
    rgb = np.random.default_rng(0).integers(0, 256, (5, 2 * 2 * 3), dtype=np.uint8)
    statistics = ([0.1, 0.5, 0.9], [0.2, 0.3, 0.4])
    flat = models.to_inputs(tf.constant(rgb), (12,), statistics).numpy()
    per_channel = (rgb.reshape(5, 4, 3) / 255 - statistics[0]) / statistics[1]
    np.testing.assert_allclose(flat, per_channel.reshape(5, 12), rtol=1e-5, atol=1e-6)
