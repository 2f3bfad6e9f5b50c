"""Exact population statistics (PreciseBN): a numpy computation over the same batches, and a pure probe."""

import numpy as np
import pytest

from bn_lab import registry
from bn_lab.config import loading as config
from bn_lab.config.yaml_io import dump, parse_yaml
from bn_lab.data import batches
from bn_lab.nets import normalizers
from bn_lab.store import schema
from bn_lab.training import train
from tests.conftest import initial_weights, numpy_loss_and_accuracy, numpy_mlp, snapshot, tiny_mlp_config

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors

BACKENDS = registry.BN_BACKENDS.names()


def tiny_config(backend: str, **precise) -> dict:
    return tiny_mlp_config(**{"bn.backend": backend}, **{f"precise_bn.{k}": v for k, v in precise.items()})


def numpy_moments(network, batches: np.ndarray, epsilon: float) -> list[np.ndarray]:
    """Each BN layer's input mean and biased variance, averaged over batches, by hand."""
    kernels = [k.numpy().astype(np.float64) for k in network.kernels]
    norms = [(b.gamma.numpy(), b.beta.numpy(), epsilon) for b in network.norms]
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


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, eval_batch_size, batch_stats",
    # 120: the 10 batches in calls of 4, 4 and 2; without the batch-statistics evaluation, which
    # must not decide the batches exact statistics take
    [(b, 1000, True) for b in BACKENDS] + [("keras", 120, False)],
)
def test_exact_statistics_are_the_average_batch_moments_and_touch_nothing(
    backend, eval_batch_size, batch_stats, tiny_mnist
):
    cfg = tiny_mlp_config(
        **{"bn.backend": backend, "train.eval_batch_size": eval_batch_size, "batch_stats.enabled": batch_stats}
    )
    trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg), arms=("with_bn",))
    trainer.train_steps(40)  # trained weights, EMA statistics that lag them
    network = trainer.networks["with_bn"]
    before = snapshot(network)

    exact = trainer.exact_population_statistics("with_bn")
    assert trainer.precise_batches.shape == (10, 30, 784)  # 300 images in batches of the training size
    for got, expected in zip(exact, numpy_moments(network, trainer.precise_batches, cfg["bn"]["epsilon"])):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    ema = [v.numpy() for v in network.population_statistics]
    assert max(np.abs(e - x).max() for e, x in zip(ema, exact)) > 1e-3  # really another estimate

    loss, accuracy, share = trainer.evaluate_precise("with_bn", tiny_mnist.validation)
    assert 0 <= accuracy <= 1 and 0 < share <= 1
    after = snapshot(network)
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "the probe changed the network"


@pytest.mark.slow
def test_training_is_bit_identical_with_and_without_exact_statistics(tiny_mnist):
    runs = {}
    for enabled in (True, False):
        cfg = tiny_config("keras", enabled=enabled)
        trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg))
        result = trainer.run()
        runs[enabled] = (result, [snapshot(n) for n in trainer.networks.values()])
    (with_precise, nets_on), (without, nets_off) = runs[True], runs[False]
    plain = [e for e in with_precise.evaluations if e.split != schema.PRECISE_BN]
    assert [(e.variant, e.step, e.split, e.loss, e.accuracy) for e in plain] == [
        (e.variant, e.step, e.split, e.loss, e.accuracy) for e in without.evaluations
    ]
    assert all(np.array_equal(a, b) for net_a, net_b in zip(nets_on, nets_off) for a, b in zip(net_a, net_b))
    precise_steps = [e.step for e in with_precise.evaluations if e.split == schema.PRECISE_BN]
    assert precise_steps == [0, 20, 40]


@pytest.mark.slow
def test_recorded_exact_statistics_accuracy_and_loss_match_numpy_from_the_saved_weights(tmp_path, tiny_mnist):
    """metrics.csv's final validation_precise_bn row, recomputed in numpy from weights.npz and the same batches.

    Catches exact statistics that are computed but never put in place (the row would then repeat the
    EMA statistics' figures), computed over other batches, or averaged wrongly.
    """
    from bn_lab import api
    from bn_lab.training import launch

    cfg = tiny_config("keras")
    run = api.load(launch.run_config(cfg, out=tmp_path / "run", progress="none"))
    arrays, epsilon = run.weights("with_bn"), cfg["bn"]["epsilon"]
    fixed = batches.precise_bn_batches(
        cfg["seed"], len(tiny_mnist.train.labels), cfg["train"]["batch_size"], cfg["precise_bn"]["images"]
    )
    per_batch = [numpy_mlp(arrays, tiny_mnist.train.images[b], "relu", epsilon)[2] for b in fixed]
    exact = [tuple(np.mean([m[k][j] for m in per_batch], axis=0) for j in (0, 1)) for k in range(len(per_batch[0]))]

    metrics, validation = run.metrics, tiny_mnist.validation
    for statistics, split in ((exact, schema.PRECISE_BN), ("population", schema.VALIDATION)):  # EMA: the contrast
        logits = numpy_mlp(arrays, validation.images, "relu", epsilon, statistics)[0]
        loss, accuracy = numpy_loss_and_accuracy(logits, validation.labels)
        final = [
            i
            for i, (v, s, step) in enumerate(zip(metrics["variant"], metrics["split"], metrics["step"]))
            if v == "with_bn" and s == split and step == cfg["train"]["steps"]
        ]
        assert len(final) == 1, split
        assert metrics["loss"][final[0]] == pytest.approx(loss, rel=1e-4), split
        # float32 against float64: an image at the decision boundary may flip, never more
        assert abs(metrics["accuracy"][final[0]] - accuracy) <= 1 / len(validation.labels), split


def numpy_exact_statistics(arrays: dict, batches: np.ndarray, epsilon: float, group_size: int) -> list:
    """The definition, by hand in float64: each layer's input mean and biased variance (over each
    group of `group_size` examples, averaged over the groups; 0: the whole batch), averaged over
    the batches, with every layer below normalized by its own batch (group) moments and nothing
    else, as inference normalizes by population statistics; relu MLP, normalizer before it."""
    layers = sorted({int(name.split("/")[0][len("layer") :]) for name in arrays})[:-1]
    sums = None
    for batch in batches:
        h, found = batch.astype(np.float64) / 255.0, []
        for k in layers:
            z = h @ arrays[f"layer{k}/kernel"].astype(np.float64)
            grouped = z.reshape(-1, group_size or len(z), z.shape[-1])
            mean, variance = grouped.mean(axis=1, keepdims=True), grouped.var(axis=1, keepdims=True)
            found += [mean.mean(axis=0)[0], variance.mean(axis=0)[0]]
            normalized = ((grouped - mean) / np.sqrt(variance + epsilon)).reshape(z.shape)
            h = np.maximum(normalized * arrays[f"layer{k}/gamma"] + arrays[f"layer{k}/beta"], 0)
        sums = found if sums is None else [a + b for a, b in zip(sums, found)]
    return [total / len(batches) for total in sums]


@pytest.mark.slow
@pytest.mark.parametrize("group_size", [0, 10], ids=["whole batch", "groups of 10"])
@pytest.mark.parametrize("normalizer", ["batch_norm", "batch_renorm", "noisy_bn"])
def test_every_normalizers_exact_statistics_come_from_the_inputs_inference_will_see(normalizer, group_size, tiny_mnist):
    """After 40 steps (moving averages that lag the weights; Batch Renorm's r and d far from 1 and 0,
    noisy BN's noise on): bn_lab's exact statistics against numpy's computation of the definition.
    Batch Renorm's layers above must not see its correction towards the moving averages, nor noisy
    BN's the noise: neither exists at inference. Batch Renorm stores σ = sqrt(variance + ε)."""
    base = tiny_mlp_config(**{"model.hidden_units": [16, 12, 8]})
    arm = {"name": "n", "normalizer": normalizer, "options": {"group_size": group_size}}
    cfg = config.validate({**parse_yaml(dump(base)), "arms": [arm]})
    trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg))
    trainer.train_steps(40)
    arrays = {name.split("/", 1)[1]: value for name, value in trainer.weights().items()}
    epsilon = cfg["arms"][0]["options"]["epsilon"]
    moments = numpy_exact_statistics(arrays, trainer.precise_batches, epsilon, group_size)
    exact = trainer.exact_population_statistics("n")
    names = normalizers.declared(normalizer).STATISTICS
    assert len(exact) == 3 * len(names)
    for layer in range(3):
        found = dict(zip(names, exact[layer * len(names) : (layer + 1) * len(names)]))
        mean, variance = moments[2 * layer], moments[2 * layer + 1]
        np.testing.assert_allclose(found["population_mean"], mean, rtol=1e-4, atol=1e-5)
        if normalizer == "batch_renorm":
            np.testing.assert_allclose(found["population_stddev"], np.sqrt(variance + epsilon), rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_allclose(found["population_variance"], variance, rtol=1e-4, atol=1e-5)
        if "steps" in found:
            assert found["steps"] == arrays[f"layer{layer + 1}/steps"]  # the step count stays
