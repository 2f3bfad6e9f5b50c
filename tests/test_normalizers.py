"""The normalizers (bn_lab.normalizers) against numpy on tiny inputs, in training and inference
mode; batch_renorm against plain BN and against Keras' own renorm; each declared scale invariance."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bn_lab import arms, bn, models, normalizers, registry

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
    for name in registry.NORMALIZERS:
        norm = normalizers.make(name, CONV)
        assert norm.SCALE_INVARIANCE in ("column", "matrix", "group"), name
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


@pytest.mark.parametrize("name", list(registry.NORMALIZERS))
def test_a_network_takes_any_normalizer_and_names_its_arrays(name):
    from bn_lab import config

    c = config.validate({"model": {"name": "convnet", "conv_layers": 3, "dense_units": 8}})
    network = models.Network(c, models.initial_weights(c), arms.Arm(name, name, {}))
    x = tf.constant(np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype(np.float32))
    with models.kept(network.population_statistics):
        trained = network(x, training=True).numpy()
    assert trained.shape == (4, 10) and np.isfinite(trained).all()
    assert np.isfinite(network(x, training=False).numpy()).all()
    norm = normalizers.make(name, (8,))
    expected = {f"layer{i}/{n}" for i in (1, 2, 3, 4) for n in ("gamma", "beta", *norm.STATISTICS)}
    assert expected <= set(network.named_arrays())
    assert len(network.parameters) == 5 + 1 + 2 * 4  # 5 kernels, the output bias (none before a norm), gamma, beta


NO_NOISE = {"shift": 0.0, "scale": 1.0, "spread": 0.0}


@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
def test_noisy_bn_without_noise_is_batch_norm_bit_for_bit(shape):
    noisy = normalizers.make("noisy_bn", shape, backend="manual", **NO_NOISE, seed=(3, 1, 2))
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


def test_noisy_bn_is_batch_norm_times_m_plus_a_in_training_and_batch_norm_in_inference():
    """Training: BN(x)·m + a, with this step's draws (numpy checks the arithmetic and the draws'
    distribution: per feature, m's mean in [1, scale], a's in [-shift, shift], their spreads at
    most `spread`); the distribution is re-drawn at the next step, and the same seed draws the
    same. Inference: BN with the population statistics, no noise."""
    shape, shift, scale, spread = (64,), 0.5, 1.5, 0.5
    options = dict(backend="manual", momentum=0.9, epsilon=EPSILON, shift=shift, scale=scale, spread=spread)
    norm = normalizers.make("noisy_bn", shape, **options, seed=(5, 2, 1))
    gamma, beta = with_affine(norm)
    x = batch(shape, n=4000)
    m, a = (v.numpy() for v in norm.noise(x.shape))
    y = norm(tf.constant(x), training=True).numpy()
    np.testing.assert_allclose(y, (normalized(x, (0,)) * gamma + beta) * m + a, rtol=1e-4, atol=1e-4)
    assert 1 - 0.05 <= m.mean(axis=0).min() and m.mean(axis=0).max() <= scale + 0.05
    assert -shift - 0.05 <= a.mean(axis=0).min() and a.mean(axis=0).max() <= shift + 0.05
    assert max(m.std(axis=0).max(), a.std(axis=0).max()) <= spread + 0.05
    assert a.mean(axis=0).std() > 0.1  # non-zero means, feature by feature
    next_m, next_a = (v.numpy() for v in norm.noise(x.shape))
    assert np.abs(next_a.mean(axis=0) - a.mean(axis=0)).max() > 0.1  # re-drawn at every step
    again = normalizers.make("noisy_bn", shape, **options, seed=(5, 2, 1))
    again.steps.assign(1)
    assert np.array_equal(again.noise(x.shape)[1].numpy(), next_a)  # the same seed and step draw the same
    other = normalizers.make("noisy_bn", shape, **options, seed=(5, 2, 2))  # another layer
    assert not np.array_equal(other.noise(x.shape)[1].numpy(), a)
    mean, var = 0.1 * x.mean(axis=0), 0.9 + 0.1 * x.var(axis=0)
    np.testing.assert_allclose(
        norm(tf.constant(x[:5]), training=False).numpy(),
        (x[:5] - mean) / np.sqrt(var + EPSILON) * gamma + beta,
        rtol=1e-4,
        atol=1e-4,
    )
