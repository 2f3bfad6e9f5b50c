"""The internal-covariate-shift probe (bn_lab.ics): G and G' against a hand-made update, zero at a
zero learning rate, and a pure probe: training with it on is bit for bit training with it off."""

import keras
import numpy as np
import tensorflow as tf

from bn_lab import arms, config, ics, models, objectives, train
from bn_lab.yaml_io import parse_yaml
from tests.conftest import snapshot, tiny_mlp_config


def tiny(**dotted):
    return tiny_mlp_config(**{"diagnostics.enabled": True, "diagnostics.probe_images": 50, **dotted})


def gradient(network, loss, x, y, parameter):
    with models.kept(network.population_statistics), tf.GradientTape() as tape:
        value = loss(network(x, training=True), y)
    return tape.gradient(value, parameter).numpy().ravel()


def test_g_prime_is_the_gradient_after_the_layers_below_take_their_sgd_step(tiny_mnist):
    """Plain SGD at lr 0.5: G' of layer 2 is its kernel's gradient once layer 1's kernel and bias
    moved by -lr·g, computed here on a second network built by hand."""
    c = tiny()
    weights = models.initial_weights(c)
    loss = objectives.loss_function(c["loss"])
    for arm in arms.of(c):
        network = models.Network(c, weights, arm)
        optimizer = objectives.make_optimizer(c)
        optimizer.build(network.parameters)
        images, labels = tiny_mnist.train.images[:30], tiny_mnist.train.labels[:30]
        found = ics.ICS(network, loss, optimizer).probe(images, labels)
        x = models.to_inputs(images, network.input_shape)
        with models.kept(network.population_statistics), tf.GradientTape() as tape:
            value = loss(network(x, training=True), labels)
        g = dict(zip([v.ref() for v in network.parameters], tape.gradient(value, network.parameters)))
        moved = models.Network(c, weights, arm)
        below = [network.kernels[0], network.biases[0]] + (
            [network.norms[0].gamma, network.norms[0].beta] if network.norms else []
        )
        for original, copy in zip(network.parameters, moved.parameters):
            step = c["optimizer"]["learning_rate"] * g[original.ref()] if any(original is b for b in below) else 0.0
            copy.assign(original - step)
        for layer in (1, 2):
            before = gradient(network, loss, x, labels, network.kernels[layer - 1])
            after = gradient(
                moved if layer == 2 else network, loss, x, labels, (moved if layer == 2 else network).kernels[layer - 1]
            )
            np.testing.assert_allclose(found[layer - 1]["ics_l2"], np.linalg.norm(before - after), rtol=1e-4, atol=1e-7)
            cosine = before @ after / np.linalg.norm(before) / np.linalg.norm(after)
            np.testing.assert_allclose(found[layer - 1]["ics_cosine"], cosine, rtol=1e-5)
        assert found[0]["ics_l2"] == 0.0 and abs(found[0]["ics_cosine"] - 1) < 1e-6  # nothing below layer 1
        assert found[1]["ics_l2"] > 0, arm.name  # the update below moved layer 2's gradient


def test_at_a_zero_learning_rate_g_prime_is_g(tiny_mnist):
    """Noisy BN (its noise is drawn from a step counter), three layers of one width."""
    base = tiny(**{"model.hidden_units": [12, 12, 12]})
    c = config.validate({**parse_yaml(config.dump(base)), "arms": [{"name": "noisy", "normalizer": "noisy_bn"}]})
    network = models.Network(c, models.initial_weights(c), arms.of(c)[0])
    optimizer = keras.optimizers.SGD(learning_rate=0.0)
    optimizer.build(network.parameters)
    found = ics.ICS(network, objectives.loss_function(c["loss"]), optimizer).probe(
        tiny_mnist.train.images[:30], tiny_mnist.train.labels[:30]
    )
    assert [f["ics_l2"] for f in found] == [0.0, 0.0, 0.0]
    assert all(abs(f["ics_cosine"] - 1) < 1e-6 for f in found)


def test_training_is_bit_identical_with_the_probe_on_and_off(tiny_mnist):
    """Adam (slots and a step count to restore), BN, noisy BN (a step counter its noise is drawn from)."""
    runs = {}
    for on in (True, False):
        base = tiny(**{"optimizer.name": "adam", "optimizer.learning_rate": 0.01, "diagnostics.ics": on})
        c = config.validate(
            {
                **parse_yaml(config.dump(base)),
                "arms": [
                    {"name": "plain"},
                    {"name": "bn", "normalizer": "batch_norm"},
                    {"name": "noisy", "normalizer": "noisy_bn"},
                ],
            }
        )
        trainer = train.Trainer(c, tiny_mnist, models.initial_weights(c))
        result = trainer.run()
        optimizer_state = [v.numpy().copy() for a in trainer.arms for v in trainer.optimizers[a].variables]
        runs[on] = (result, [snapshot(n) for n in trainer.networks.values()], optimizer_state)
    (probed, nets_on, slots_on), (plain, nets_off, slots_off) = runs[True], runs[False]
    assert all(np.array_equal(a, b) for on, off in zip(nets_on, nets_off) for a, b in zip(on, off))
    assert all(np.array_equal(a, b) for a, b in zip(slots_on, slots_off))
    assert [(e.variant, e.step, e.split, e.loss, e.accuracy) for e in probed.evaluations] == [
        (e.variant, e.step, e.split, e.loss, e.accuracy) for e in plain.evaluations
    ]
    shifts = [r for r in probed.diagnostics if r["quantity"] in ics.QUANTITIES]
    assert {(r["variant"], r["layer"]) for r in shifts} == {
        (a, layer) for a in ("plain", "bn", "noisy") for layer in (1, 2)
    }
    assert {r["step"] for r in shifts} == {0, 20, 40}
    assert not [r for r in plain.diagnostics if r["quantity"] in ics.QUANTITIES]
