"""The normalizers (bn_lab.nets.normalizers) against numpy on tiny inputs, in training and inference
mode; batch_renorm against plain BN and against Keras' own renorm; each declared scale invariance."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bn_lab import registry
from bn_lab.config import arms
from bn_lab.nets import bn, normalizers
from bn_lab.nets import network as models
from tests.conftest import build_network, initial_weights

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors

EPSILON = 1e-3
DENSE, CONV = (6,), (3, 3, 4)  # one example's shape: a dense layer's features, a conv layer's map


def batch(shape, seed=0, n=5):
    return np.random.default_rng(seed).normal(1.5, 2.0, (n, *shape)).astype(np.float32)


def with_affine(norm, seed=1):
    """gamma and beta set to values other than 1 and 0, so that the affine part is tested too."""
    rng = np.random.default_rng(seed)
    norm.gamma.assign(rng.uniform(0.5, 1.5, norm.gamma.shape).astype(np.float32))
    norm.beta.assign(rng.normal(0, 0.5, norm.beta.shape).astype(np.float32))
    return norm.gamma.numpy(), norm.beta.numpy()


def normalized(x, axes, groups=None):
    if groups:
        n, *spatial, channels = x.shape
        grouped = x.reshape(n, *spatial, groups, channels // groups)
        axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
        mean, var = grouped.mean(axis=axes, keepdims=True), grouped.var(axis=axes, keepdims=True)
        return ((grouped - mean) / np.sqrt(var + EPSILON)).reshape(x.shape)
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + EPSILON)


def test_every_registered_normalizer_declares_what_it_has():
    from bn_lab.nets.architecture import BRANCH_END, Layer

    for name in registry.NORMALIZERS:
        declared = normalizers.declared(name)
        # A residual normalizer is told its layer (here a branch's end) and the blocks.
        layer = {"layer": Layer("conv", (3, 3, 4, 4), CONV, role=BRANCH_END), "blocks": 2}
        norm = normalizers.make(name, CONV, **(layer if declared.RESIDUAL else {}))
        assert norm.SCALE_INVARIANCE in (("column", "matrix", "group") + ((None,) if declared.RESIDUAL else ())), name
        assert declared.HIDDEN_BIAS in ((None,) if not declared.RESIDUAL else (True, False)), name
        assert set(norm.trainable) and all(v.trainable for v in norm.trainable.values()), name
        assert isinstance(norm.HAS_POPULATION_STATISTICS, bool) and bool(norm.population_statistics) == (
            norm.HAS_POPULATION_STATISTICS
        ), name
        assert len(norm.STATISTICS) == len(norm.population_statistics), name


@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
def test_layer_norm_is_per_example_over_every_feature_in_both_modes(shape):
    norm = normalizers.make("layer_norm", shape, epsilon=EPSILON)
    gamma, beta = with_affine(norm)
    x = batch(shape)
    expected = normalized(x, tuple(range(1, x.ndim))) * gamma + beta
    for training in (True, False):  # no batch statistics: the same function in both modes
        np.testing.assert_allclose(norm(tf.constant(x), training=training).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_group_norm_is_per_example_over_groups_of_channels_in_both_modes():
    norm = normalizers.make("group_norm", CONV, groups=2, epsilon=EPSILON)
    gamma, beta = with_affine(norm)
    x = batch(CONV)
    expected = normalized(x, None, groups=2) * gamma + beta
    for training in (True, False):
        np.testing.assert_allclose(norm(tf.constant(x), training=training).numpy(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="4 channels do not split into 3 groups"):
        normalizers.make("group_norm", CONV, groups=3)


@pytest.mark.parametrize("backend", list(registry.BN_BACKENDS))
def test_batch_norm_uses_the_batch_in_training_and_its_population_in_inference(backend):
    norm = normalizers.make("batch_norm", CONV, backend=backend, momentum=0.9, epsilon=EPSILON)
    gamma, beta = with_affine(norm)
    x = batch(CONV)
    axes = (0, 1, 2)
    trained = norm(tf.constant(x), training=True).numpy()
    np.testing.assert_allclose(trained, normalized(x, axes) * gamma + beta, rtol=1e-4, atol=1e-5)
    mean, var = 0.1 * x.mean(axis=axes), 0.9 * 1.0 + 0.1 * x.var(axis=axes)  # one update from (0, 1)
    inferred = norm(tf.constant(x), training=False).numpy()
    np.testing.assert_allclose(inferred, (x - mean) / np.sqrt(var + EPSILON) * gamma + beta, rtol=1e-4, atol=1e-5)


def numpy_renorm(batches, r_max, d_max, momentum, population=(0.0, 1.0)):
    """The paper's algorithm in numpy: outputs in training mode, then the population (mean, stddev)."""
    mu, sigma = (np.full(batches[0].shape[-1], v, np.float64) for v in population)
    outputs = []
    for x in batches:
        axes = tuple(range(x.ndim - 1))
        mean, stddev = x.mean(axis=axes), np.sqrt(x.var(axis=axes) + EPSILON)
        r = np.clip(stddev / sigma, 1 / r_max, r_max)
        d = np.clip((mean - mu) / sigma, -d_max, d_max)
        outputs.append((x - mean) / stddev * r + d)
        mu, sigma = momentum * mu + (1 - momentum) * mean, momentum * sigma + (1 - momentum) * stddev
    return outputs, (mu, sigma)


def test_batch_renorm_is_the_papers_algorithm_in_both_modes():
    batches = [batch(DENSE, seed=s) * (1 + s) for s in range(4)]  # batches unlike the population: r and d clip
    norm = normalizers.make("batch_renorm", DENSE, r_max=1.5, d_max=0.5, momentum=0.8, epsilon=EPSILON)
    expected, (mu, sigma) = numpy_renorm(batches, 1.5, 0.5, 0.8)
    for x, want in zip(batches, expected):
        np.testing.assert_allclose(norm(tf.constant(x), training=True).numpy(), want, rtol=1e-5, atol=1e-5)
    x = batches[0]
    np.testing.assert_allclose(norm(tf.constant(x), training=False).numpy(), (x - mu) / sigma, rtol=1e-5, atol=1e-5)
    assert float(norm.steps) == 4


def test_batch_renorm_relaxes_its_limits_on_schedule():
    norm = normalizers.make("batch_renorm", DENSE, r_max=3.0, d_max=5.0, relax_from=10, relax_to=30)
    for steps, (r_max, d_max) in {0: (1, 0), 10: (1, 0), 20: (2, 2.5), 30: (3, 5), 99: (3, 5)}.items():
        norm.steps.assign(steps)
        assert [float(v) for v in norm.limits()] == [r_max, d_max], steps


def test_batch_renorm_at_r_max_1_and_d_max_0_is_batch_norm_bit_for_bit():
    renorm = normalizers.make("batch_renorm", CONV, r_max=1.0, d_max=0.0, epsilon=EPSILON)
    plain = bn.make("manual", CONV[-1], len(CONV) + 1, 0.99, EPSILON)
    for norm in (renorm, plain):
        with_affine(norm)
    for seed in range(3):
        x = tf.constant(batch(CONV, seed=seed))
        assert np.array_equal(renorm(x, training=True).numpy(), plain(x, training=True).numpy())
    assert np.array_equal(renorm.population_mean.numpy(), plain.population_mean.numpy())


def test_batch_renorm_agrees_with_keras_renorm():
    keras_renorm = keras.layers.BatchNormalization(
        momentum=0.8,
        epsilon=EPSILON,
        renorm=True,
        renorm_clipping={"rmax": 1.5, "rmin": 1 / 1.5, "dmax": 0.5},
        renorm_momentum=0.8,
    )
    keras_renorm.build((None, *CONV))
    mine = normalizers.make("batch_renorm", CONV, r_max=1.5, d_max=0.5, momentum=0.8, epsilon=EPSILON)
    for seed in range(4):
        x = tf.constant(batch(CONV, seed=seed) * (1 + seed))
        np.testing.assert_allclose(
            mine(x, training=True).numpy(), keras_renorm(x, training=True).numpy(), rtol=2e-5, atol=2e-5
        )
    x = tf.constant(batch(CONV, seed=9))
    np.testing.assert_allclose(
        mine(x, training=False).numpy(), keras_renorm(x, training=False).numpy(), rtol=2e-5, atol=2e-5
    )


def test_a_check_in_training_mode_leaves_the_population_and_the_schedule_as_they_were():
    norm = normalizers.make("batch_renorm", DENSE, relax_from=0, relax_to=100)
    norm(tf.constant(batch(DENSE)), training=True)
    before = [v.numpy().copy() for v in norm.population_statistics]
    with models.kept(norm.population_statistics):
        norm(tf.constant(batch(DENSE, seed=3)), training=True)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, norm.population_statistics))


def test_each_declared_scale_invariance_holds():
    """Rescaling what the declaration names (one column, the whole input, one group; for a
    normalizer with population statistics, the population with it) leaves the training-mode
    output unchanged; rescaling one column of a layer-normalized input does not."""
    x = batch(CONV)
    one_column = np.ones(CONV[-1], np.float32)
    one_column[1] = 3.0
    one_group = np.array([3.0, 3.0, 1.0, 1.0], np.float32)  # 2 groups of 2 channels
    declared = {
        "batch_norm": one_column,
        "batch_renorm": one_column,
        "layer_norm": np.float32(3.0),
        "group_norm": one_group,
    }
    invariance = {"batch_norm": "column", "batch_renorm": "column", "layer_norm": "matrix", "group_norm": "group"}
    for name, scale in declared.items():
        norm = normalizers.make(name, CONV, **({"groups": 2} if name == "group_norm" else {}))
        assert norm.SCALE_INVARIANCE == invariance[name]
        with models.kept(norm.population_statistics) as population:
            before = norm(tf.constant(x), training=True).numpy()
        if name == "batch_renorm":  # r and d compare the batch with the population: it scales too
            mean, stddev, _ = population
            norm.population_mean.assign(mean * scale)
            norm.population_stddev.assign(stddev * scale)
        after = norm(tf.constant(x * scale), training=True).numpy()
        np.testing.assert_allclose(after, before, rtol=1e-3, atol=1e-3, err_msg=name)  # ε is not rescaled
    norm = normalizers.make("layer_norm", CONV)
    changed = norm(tf.constant(x * one_column), training=True).numpy()
    assert not np.allclose(changed, norm(tf.constant(x), training=True).numpy(), atol=1e-2)


# A stack's normalizers; the residual ones (skip_init, fixup): tests/test_resnet.py, tests/test_residual.py.
@pytest.mark.parametrize("name", [n for n in registry.NORMALIZERS if not normalizers.declared(n).RESIDUAL])
def test_a_network_takes_any_normalizer_and_names_its_arrays(name):
    from bn_lab.config import loading as config

    c = config.validate({"model": {"name": "convnet", "conv_layers": 3, "dense_units": 8}})
    network = build_network(c, initial_weights(c), arms.Arm(name, name, {}))
    x = tf.constant(np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32))
    with models.kept(network.population_statistics):
        trained = network(x, training=True).numpy()
    assert trained.shape == (4, 10) and np.isfinite(trained).all()
    assert np.isfinite(network(x, training=False).numpy()).all()
    norm = normalizers.make(name, (8,))
    expected = {f"layer{i}/{n}" for i in (1, 2, 3, 4) for n in ("gamma", "beta", *norm.STATISTICS)}
    assert expected <= set(network.named_arrays())
    assert len(network.parameters) == 5 + 1 + 2 * 4  # 5 kernels, the output bias (none before a norm), gamma, beta


NO_NOISE = {  # each noise with its strengths at zero
    "algorithm1": {"n_mu": 0.0, "n_sigma": 1.0, "r_mu": 0.0, "r_sigma": 0.0},
    "gaussian": {"noise": "gaussian", "shift": 0.0, "scale": 1.0, "spread": 0.0},
}


@pytest.mark.parametrize("noise", list(NO_NOISE))
@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
def test_noisy_bn_without_noise_is_batch_norm_bit_for_bit(shape, noise):
    noisy = normalizers.make("noisy_bn", shape, backend="manual", **NO_NOISE[noise], seed=(3, "noisy", 2))
    plain = normalizers.make("batch_norm", shape, backend="manual")
    for norm in (noisy, plain):
        with_affine(norm)
    for seed in range(3):
        x = tf.constant(batch(shape, seed=seed))
        assert np.array_equal(noisy(x, training=True).numpy(), plain(x, training=True).numpy())
    x = tf.constant(batch(shape, seed=7))
    assert np.array_equal(noisy(x, training=False).numpy(), plain(x, training=False).numpy())
    assert np.array_equal(noisy.population_variance.numpy(), plain.population_variance.numpy())
    assert int(noisy.steps) == 3


def algorithm1_draws(shape, steps: int, n: int, **options):
    """The (multiplier s, offset m) of `steps` consecutive steps on n examples: (steps, n, *shape) each."""
    norm = normalizers.make("noisy_bn", shape, **options, seed=(5, "noisy", 1))
    draws = []
    for step in range(steps):
        norm.steps.assign(step)
        draws.append([v.numpy() for v in norm.noise((n, *shape))])
    return np.array([s for s, _ in draws]), np.array([m for _, m in draws])


def test_noisy_bn_draws_algorithm_1s_noise():
    """Santurkar et al. 2018, Algorithm 1, with the paper's constants (n_μ 0.5, n_σ 1.25, r_μ = r_σ
    0.1): per unit and step μ ~ U(−n_μ, n_μ), σ ~ U(1, n_σ); per example and unit m ~ U(μ ± r_μ),
    s ~ N(σ, r_σ). Checked over 200 steps × 64 units × 2,000 examples: each unit's m spans exactly
    2 r_μ around its μ with a uniform's spread, s has σ's mean and r_σ's spread; the per-step μ and
    σ spread over their intervals as uniforms do."""
    n_mu, n_sigma, r = 0.5, 1.25, 0.1
    options = normalizers.declared("noisy_bn").OPTIONS
    assert (options["noise"], options["n_mu"], options["n_sigma"], options["r_mu"], options["r_sigma"]) == (
        "algorithm1",
        n_mu,
        n_sigma,
        r,
        r,
    )
    s, m = algorithm1_draws((64,), steps=200, n=2000)
    low, high = m.min(axis=1), m.max(axis=1)  # per step and unit: the ends of U(μ − r_μ, μ + r_μ)
    np.testing.assert_allclose(high - low, 2 * r, atol=0.002)
    mu = (high + low) / 2
    assert -n_mu - 0.002 <= mu.min() < -0.45 and 0.45 < mu.max() <= n_mu + 0.002
    np.testing.assert_allclose(mu.mean(), 0.0, atol=0.01)
    np.testing.assert_allclose(mu.std(), 2 * n_mu / np.sqrt(12), rtol=0.03)  # U(−n_μ, n_μ)
    np.testing.assert_allclose(m.std(axis=1).mean(), 2 * r / np.sqrt(12), rtol=0.02)
    sigma = s.mean(axis=1)  # per step and unit: N(σ, r_σ)'s mean
    assert 1 - 0.01 <= sigma.min() < 1.01 and 1.24 < sigma.max() <= n_sigma + 0.01
    np.testing.assert_allclose(sigma.mean(), (1 + n_sigma) / 2, atol=0.005)
    np.testing.assert_allclose(sigma.std(), (n_sigma - 1) / np.sqrt(12), rtol=0.05)
    np.testing.assert_allclose(s.std(axis=1).mean(), r, rtol=0.02)
    # every example and unit its own draw, around its unit's μ and σ independent of m's
    within_s, within_m = s[0] - s[0].mean(axis=0), m[0] - m[0].mean(axis=0)
    assert abs(np.corrcoef(within_s.ravel(), within_m.ravel())[0, 1]) < 0.01


def test_noisy_bn_conv_draws_per_example_and_position_the_distribution_per_channel():
    """ "The height and width dimensions are treated as batch dimensions": μ and σ per channel, m and s
    per example, position and channel."""
    s, m = algorithm1_draws((8, 8, 16), steps=1, n=200)
    per_channel = m[0].reshape(-1, 16)
    np.testing.assert_allclose(per_channel.max(axis=0) - per_channel.min(axis=0), 0.2, atol=0.002)
    assert m[0, 0, 0, 0, 0] != m[0, 0, 0, 1, 0]  # two positions of one example: two draws
    assert np.abs(s[0].reshape(-1, 16).mean(axis=0) - 1.125).max() < 0.13  # σ in [1, 1.25] per channel


def test_noisy_bn_is_batch_norm_times_s_plus_m_in_training_and_batch_norm_in_inference():
    """Training: BN(x)·s + m with this step's draws, re-drawn at the next step; the same seed (run, arm
    name, layer) and step draw the same, another layer or arm name others. Inference: BN with the
    population statistics, no noise. The earlier noise (`noise: gaussian`): its distribution's
    bounds (m's mean in [1, scale], a's in [-shift, shift], spreads at most `spread`)."""
    shape = (64,)
    options = dict(backend="manual", momentum=0.9, epsilon=EPSILON)
    norm = normalizers.make("noisy_bn", shape, **options, seed=(5, "noisy", 1))
    gamma, beta = with_affine(norm)
    x = batch(shape, n=4000)
    s, m = (v.numpy() for v in norm.noise(x.shape))
    y = norm(tf.constant(x), training=True).numpy()
    np.testing.assert_allclose(y, (normalized(x, (0,)) * gamma + beta) * s + m, rtol=1e-4, atol=1e-4)
    next_s, next_m = (v.numpy() for v in norm.noise(x.shape))
    assert np.abs(next_m.mean(axis=0) - m.mean(axis=0)).max() > 0.1  # re-drawn at every step
    again = normalizers.make("noisy_bn", shape, **options, seed=(5, "noisy", 1))
    again.steps.assign(1)
    assert np.array_equal(again.noise(x.shape)[1].numpy(), next_m)  # the same seed and step draw the same
    for seed in ((5, "noisy", 2), (5, "other", 1), (6, "noisy", 1)):  # another layer, arm, run seed
        other = normalizers.make("noisy_bn", shape, **options, seed=seed)
        assert not np.array_equal(other.noise(x.shape)[1].numpy(), m), seed
    mean, var = 0.1 * x.mean(axis=0), 0.9 + 0.1 * x.var(axis=0)
    np.testing.assert_allclose(
        norm(tf.constant(x[:5]), training=False).numpy(),
        (x[:5] - mean) / np.sqrt(var + EPSILON) * gamma + beta,
        rtol=1e-4,
        atol=1e-4,
    )
    shift, scale, spread = 0.5, 1.5, 0.5
    earlier = normalizers.make("noisy_bn", shape, noise="gaussian", seed=(5, "noisy", 1))
    multiplier, offset = (v.numpy() for v in earlier.noise(x.shape))
    assert 1 - 0.05 <= multiplier.mean(axis=0).min() and multiplier.mean(axis=0).max() <= scale + 0.05
    assert -shift - 0.05 <= offset.mean(axis=0).min() and offset.mean(axis=0).max() <= shift + 0.05
    assert max(multiplier.std(axis=0).max(), offset.std(axis=0).max()) <= spread + 0.05
    assert offset.mean(axis=0).std() > 0.1  # non-zero means, feature by feature
