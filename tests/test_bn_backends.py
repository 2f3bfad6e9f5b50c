"""The three BN backends are the same function: outputs, gradients and population statistics.

Tolerance: everything is float32 (eps = 6e-8). The backends differ only in the
order of float operations (Keras and tf.nn fold gamma into rsqrt(var + eps) and
subtract mean * scale; `manual` divides (x - mean) by sqrt(var + eps)), and the
batch mean/variance are sums over up to 128 values. Measured differences are
at most 1.1e-6 for values of order 1-10 here; 1e-5 relative + 1e-5 absolute
leaves ~10x headroom while still catching any real difference (a wrong epsilon, an
unbiased variance, momentum applied the other way round, all of which differ by
1e-3 or more). The float64 numpy reference pins all three to the definition.
"""

import numpy as np
import pytest
import tensorflow as tf

from bn_lab import registry
from bn_lab.nets import bn

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors

RTOL = ATOL = 1e-5
MOMENTUM, EPSILON = 0.99, 1e-3
SHAPES = {"dense": (32, 7), "conv": (4, 6, 5, 3)}  # per-feature / per-channel (over batch, height, width)


def reference(batches, gamma, beta, upstream):
    """float64 numpy: training-mode outputs and input gradients, then population statistics."""
    axes = tuple(range(batches[0].ndim - 1))
    mean_pop, var_pop = np.zeros(gamma.shape), np.ones(gamma.shape)
    outputs, input_grads = [], []
    for x in batches:
        x = x.astype(np.float64)
        n = x.size / x.shape[-1]
        mean, var = x.mean(axes), x.var(axes)  # biased variance, as Keras uses for its moving variance
        x_hat = (x - mean) / np.sqrt(var + EPSILON)
        outputs.append(x_hat * gamma + beta)
        g = upstream * gamma  # d loss / d x_hat for loss = sum(y * upstream)
        input_grads.append((g - g.mean(axes) - x_hat * (g * x_hat).sum(axes) / n) / np.sqrt(var + EPSILON))
        mean_pop = mean_pop * MOMENTUM + mean * (1 - MOMENTUM)
        var_pop = var_pop * MOMENTUM + var * (1 - MOMENTUM)
    return outputs, input_grads, mean_pop, var_pop


def run_backend(backend, batches, gamma, beta, upstream, probe):
    norm = bn.make(backend, gamma.shape[0], batches[0].ndim, MOMENTUM, EPSILON)
    norm.gamma.assign(gamma)
    norm.beta.assign(beta)
    outputs, grads = [], []
    for x in batches:
        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = norm(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        dx, dgamma, dbeta = tape.gradient(loss, [x, norm.gamma, norm.beta])
        outputs.append(y.numpy())
        grads.append((dx.numpy(), dgamma.numpy(), dbeta.numpy()))
    population = (norm.population_mean.numpy(), norm.population_variance.numpy())
    inference = norm(tf.constant(probe), training=False).numpy()
    # Inference mode updates nothing.
    assert all(
        np.array_equal(a, b.numpy()) for a, b in zip(population, (norm.population_mean, norm.population_variance))
    )
    return outputs, grads, population, inference


@pytest.fixture(params=list(SHAPES), scope="module")
def case(request):
    shape = SHAPES[request.param]
    rng = np.random.default_rng(7)
    # Inputs far from N(0, 1) so that normalisation, epsilon and the EMA all matter.
    batches = [rng.normal(3.0, 4.0, shape).astype(np.float32) for _ in range(3)]
    gamma = rng.uniform(0.5, 2.0, shape[-1]).astype(np.float32)
    beta = rng.normal(0.0, 1.0, shape[-1]).astype(np.float32)
    upstream = rng.normal(0.0, 1.0, shape).astype(np.float32)
    probe = rng.normal(3.0, 4.0, shape).astype(np.float32)
    runs = {b: run_backend(b, batches, gamma, beta, upstream, probe) for b in registry.BN_BACKENDS}
    return batches, gamma, beta, upstream, probe, runs


@pytest.mark.parametrize("backend", registry.BN_BACKENDS.names())
def test_training_mode_matches_the_definition(case, backend):
    batches, gamma, beta, upstream, probe, runs = case
    ref_out, ref_dx, ref_mean, ref_var = reference(batches, gamma, beta, upstream)
    outputs, grads, (mean, var), _ = runs[backend]
    for got, want in zip(outputs, ref_out):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    for (dx, _, _), want in zip(grads, ref_dx):
        np.testing.assert_allclose(dx, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(mean, ref_mean, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(var, ref_var, rtol=RTOL, atol=ATOL)
    # Not vacuous: three updates moved the statistics well away from their start (0, 1).
    assert np.abs(mean).min() > 0.05 and np.abs(var - 1).min() > 0.05


@pytest.mark.parametrize("backend", ["tf_nn", "manual"])
def test_backends_agree_with_keras(case, backend):
    _, _, _, _, probe, runs = case
    keras_out, keras_grads, keras_pop, keras_inference = runs["keras"]
    outputs, grads, population, inference = runs[backend]
    for got, want in zip(outputs, keras_out):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    for got, want in zip(grads, keras_grads):
        for g, w in zip(got, want):  # d/dx, d/dgamma, d/dbeta
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    for got, want in zip(population, keras_pop):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(inference, keras_inference, rtol=RTOL, atol=ATOL)


def test_inference_mode_uses_the_population_statistics(case):
    _, gamma, beta, _, probe, runs = case
    _, _, (mean, var), inference = runs["keras"]
    expected = (probe - mean) / np.sqrt(var + EPSILON) * gamma + beta
    np.testing.assert_allclose(inference, expected, rtol=RTOL, atol=ATOL)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown bn backend 'torch'; allowed: keras, tf_nn, manual"):
        bn.make("torch", 3, 2)
