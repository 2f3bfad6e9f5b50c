"""Exact population statistics (PreciseBN): a numpy computation over the same batches, and a pure probe."""

import numpy as np
import pytest

from bn_lab import models, registry, rundir, train
from tests.conftest import snapshot, tiny_mlp_config

BACKENDS = registry.BN_BACKENDS.names()


def tiny_config(backend: str, **precise) -> dict:
    return tiny_mlp_config(**{"bn.backend": backend}, **{f"precise_bn.{k}": v for k, v in precise.items()})


def numpy_moments(network, batches: np.ndarray, epsilon: float) -> list[np.ndarray]:
    """Each BN layer's input mean and biased variance, averaged over batches, by hand."""
    kernels = [k.numpy().astype(np.float64) for k in network.kernels]
    norms = [(b.gamma.numpy(), b.beta.numpy(), epsilon) for b in network.batch_norms]
    sums = None
    for batch in batches:
        h, found = batch.astype(np.float64) / 255.0, []
        for kernel, (gamma, beta, epsilon) in zip(kernels[:-1], norms):
            z = h @ kernel  # no bias before BN
            mean, variance = z.mean(axis=0), z.var(axis=0)  # biased, as the layer uses
            found += [mean, variance]
            h = np.maximum((z - mean) / np.sqrt(variance + epsilon) * gamma + beta, 0)  # training mode: batch stats
        sums = found if sums is None else [a + b for a, b in zip(sums, found)]
    return [s / len(batches) for s in sums]


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_statistics_are_the_average_batch_moments_and_touch_nothing(backend, tiny_mnist):
    cfg = tiny_config(backend)
    trainer = train.PairTrainer(cfg, tiny_mnist, models.initial_weights(cfg), variants=("with_bn",))
    trainer.train_steps(40)  # trained weights, EMA statistics that lag them
    network = trainer.networks["with_bn"]
    before = snapshot(network)

    exact = trainer.exact_population_statistics()
    assert trainer.precise_batches.shape == (10, 30, 784)  # 300 images in batches of the training size
    for got, expected in zip(exact, numpy_moments(network, trainer.precise_batches, cfg["bn"]["epsilon"])):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    ema = [v.numpy() for v in network.population_statistics]
    assert max(np.abs(e - x).max() for e, x in zip(ema, exact)) > 1e-3  # really another estimate

    loss, accuracy, share = trainer.evaluate_precise("with_bn", tiny_mnist.validation)
    assert 0 <= accuracy <= 1 and 0 < share <= 1
    after = snapshot(network)
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "the probe changed the network"


def test_training_is_bit_identical_with_and_without_exact_statistics(tiny_mnist):
    runs = {}
    for enabled in (True, False):
        cfg = tiny_config("keras", enabled=enabled)
        trainer = train.PairTrainer(cfg, tiny_mnist, models.initial_weights(cfg))
        result = trainer.run()
        runs[enabled] = (result, [snapshot(n) for n in trainer.networks.values()])
    (with_precise, nets_on), (without, nets_off) = runs[True], runs[False]
    plain = [e for e in with_precise.evaluations if e.split != rundir.PRECISE_BN]
    assert [(e.variant, e.step, e.split, e.loss, e.accuracy) for e in plain] == [
        (e.variant, e.step, e.split, e.loss, e.accuracy) for e in without.evaluations
    ]
    assert all(np.array_equal(a, b) for net_a, net_b in zip(nets_on, nets_off) for a, b in zip(net_a, net_b))
    precise_steps = [e.step for e in with_precise.evaluations if e.split == rundir.PRECISE_BN]
    assert precise_steps == [0, 20, 40]
