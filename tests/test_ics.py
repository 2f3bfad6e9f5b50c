"""The internal-covariate-shift probe (bn_lab.probes.ics): G and G' against a hand-made update, zero at a
zero learning rate, and a pure probe: training with it on is bit for bit training with it off."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bn_lab.config import arms
from bn_lab.config import loading as config
from bn_lab.config.yaml_io import dump, parse_yaml
from bn_lab.nets import network as models
from bn_lab.probes import diagnostics, ics
from bn_lab.store import schema
from bn_lab.training import objectives, train
from tests.conftest import build_network, initial_weights, snapshot, tiny_mlp_config

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors


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
    weights = initial_weights(c)
    loss = objectives.loss_function(c["loss"])
    for arm in arms.of(c):
        network = build_network(c, weights, arm)
        optimizer = objectives.make_optimizer(c)
        optimizer.build(network.parameters)
        images, labels = tiny_mnist.train.images[:30], tiny_mnist.train.labels[:30]
        found = ics.ICS(network, loss, optimizer, tiny_mnist.validation.images[:50], 0).probe(images, labels)
        x = models.to_inputs(images, network.input_shape)
        with models.kept(network.population_statistics), tf.GradientTape() as tape:
            value = loss(network(x, training=True), labels)
        g = dict(zip([v.ref() for v in network.parameters], tape.gradient(value, network.parameters)))
        moved = build_network(c, weights, arm)
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


def plain_tf_logits(params: dict, x, hidden: int, normalized: bool, epsilon: float):
    """The lesson's MLP written out with plain TensorFlow ops from named arrays (relu, BN before it
    in training mode with the batch's moments; a bias only without BN)."""
    h = x
    for k in range(1, hidden + 1):
        z = h @ params[f"layer{k}/kernel"]
        if normalized:
            mean, variance = tf.nn.moments(z, [0])
            z = (z - mean) / tf.sqrt(variance + epsilon) * params[f"layer{k}/gamma"] + params[f"layer{k}/beta"]
        else:
            z = z + params[f"layer{k}/bias"]
        h = tf.nn.relu(z)
    return h @ params[f"layer{hidden + 1}/kernel"] + params[f"layer{hidden + 1}/bias"]


def independent_ics(arrays, slots, optimizer_name, lr, iterations, images, labels, hidden, normalized, epsilon):
    """Definition 2.1 computed apart from bn_lab: G_i on the batch at W⁽ᵗ⁾, the update W⁽ᵗ⁺¹⁾ of every
    parameter from that batch's gradient by the optimizer's formula (SGD: w − lr·g; Adam, Keras':
    m += (g − m)(1 − β₁), v += (g² − v)(1 − β₂), w −= m·lr·sqrt(1 − β₂ᵗ)/(1 − β₁ᵗ)/(sqrt(v) + ε)),
    then G′_i with layers 1..i−1 at W⁽ᵗ⁺¹⁾ and the rest at W⁽ᵗ⁾. Returns [(‖G − G′‖, cos)] per hidden layer."""
    x = tf.constant(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    y = tf.constant(labels)

    def gradients(params):
        variables = {name: tf.Variable(value) for name, value in params.items()}
        with tf.GradientTape() as tape:
            logits = plain_tf_logits(variables, x, hidden, normalized, epsilon)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        return {name: g.numpy() for name, g in zip(variables, tape.gradient(loss, list(variables.values())))}

    g = gradients(arrays)
    updated = {}
    for name, w in arrays.items():
        if optimizer_name == "sgd":
            updated[name] = w - lr * g[name]
        else:
            m, v = slots[name]
            t = iterations + 1
            m = m + (g[name] - m) * (1 - 0.9)
            v = v + (g[name] ** 2 - v) * (1 - 0.999)
            updated[name] = w - m * lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) / (np.sqrt(v) + 1e-8)
    found = []
    for i in range(1, hidden + 1):
        moved = {name: updated[name] if int(name.split("/")[0][5:]) < i else w for name, w in arrays.items()}
        before, after = g[f"layer{i}/kernel"].ravel(), gradients(moved)[f"layer{i}/kernel"].ravel()
        found.append(
            (
                np.linalg.norm(before - after),
                np.linalg.norm(before),
                before @ after / np.linalg.norm(before) / np.linalg.norm(after),
            )
        )
    return found


@pytest.mark.slow
@pytest.mark.parametrize("optimizer_name, lr", [("sgd", 0.5), ("adam", 0.01)])
def test_the_probe_is_definition_2_1_computed_independently(tiny_mnist, optimizer_name, lr):
    """At the evaluation after 20 steps: bn_lab's G and G′ of every hidden layer of a 3-layer MLP,
    plain and BN, against a second network written out in plain TensorFlow from the weights and
    optimizer slots of that moment, on the batch step 20 trains on (not step 19's), the update
    computed by the optimizer's formula."""
    c = tiny(
        **{
            "model.hidden_units": [12, 10, 8],
            "optimizer.name": optimizer_name,
            "optimizer.learning_rate": lr,
            "diagnostics.ics": True,
        }
    )
    trainer = train.Trainer(c, tiny_mnist, initial_weights(c))
    captured = {}

    def on_evaluation(step, evaluations, measurements):
        if step != 20:
            return
        for arm in trainer.arms:
            network, optimizer = trainer.networks[arm], trainer.optimizers[arm]
            arrays = {k: v for k, v in network.named_arrays().items() if "population" not in k}
            slots = {}
            if optimizer_name == "adam":
                named = parameter_names(network)
                for variable, m, v in zip(network.parameters, optimizer._momentums, optimizer._velocities):
                    slots[named[variable.ref()]] = (m.numpy(), v.numpy())
            captured[arm] = (arrays, slots, int(optimizer.iterations.numpy()))
        captured["batch"] = trainer.next_batch()

    result = trainer.run(on_evaluation)
    images, labels = captured["batch"]
    assert np.array_equal(images, tiny_mnist.train.images[trainer.batches.order[20]])  # step 20's batch
    assert not np.array_equal(images, tiny_mnist.train.images[trainer.batches.order[19]])
    for arm, normalized in (("without_bn", False), ("with_bn", True)):
        arrays, slots, iterations = captured[arm]
        assert iterations == 20
        expected = independent_ics(arrays, slots, optimizer_name, lr, iterations, images, labels, 3, normalized, 1e-3)
        rows = {
            (r["layer"], r["quantity"]): r["value"]
            for r in result.diagnostics
            if r["variant"] == arm and r["step"] == 20
        }
        for layer, (l2, norm, cosine) in enumerate(expected, start=1):
            assert rows[(layer, "ics_l2")] == pytest.approx(l2, rel=2e-3, abs=1e-7), (arm, layer)
            assert rows[(layer, "ics_relative")] == pytest.approx(l2 / norm, rel=2e-3, abs=1e-7), (arm, layer)
            assert rows[(layer, "ics_cosine")] == pytest.approx(cosine, rel=1e-5), (arm, layer)
        assert rows[(1, "ics_l2")] == 0.0 and rows[(2, "ics_l2")] > 0 and rows[(3, "ics_l2")] > 0


def parameter_names(network) -> dict:
    """{variable ref: its name in weights.npz} for a network's trainable parameters."""
    names = {}
    for i, (kernel, bias) in enumerate(zip(network.kernels, network.biases), start=1):
        names[kernel.ref()] = f"layer{i}/kernel"
        if bias is not None:
            names[bias.ref()] = f"layer{i}/bias"
    for i, norm in enumerate(network.norms, start=1):
        names[norm.gamma.ref()], names[norm.beta.ref()] = f"layer{i}/gamma", f"layer{i}/beta"
    return names


def test_at_a_zero_learning_rate_g_prime_is_g(tiny_mnist):
    """Noisy BN (its noise is drawn from a step counter), three layers of one width."""
    base = tiny(**{"model.hidden_units": [12, 12, 12]})
    c = config.validate({**parse_yaml(dump(base)), "arms": [{"name": "noisy", "normalizer": "noisy_bn"}]})
    network = build_network(c, initial_weights(c), arms.of(c)[0])
    optimizer = keras.optimizers.SGD(learning_rate=0.0)
    optimizer.build(network.parameters)
    found = ics.ICS(
        network, objectives.loss_function(c["loss"]), optimizer, tiny_mnist.validation.images[:50], 0
    ).probe(tiny_mnist.train.images[:30], tiny_mnist.train.labels[:30])
    assert [f["ics_l2"] for f in found] == [0.0, 0.0, 0.0]
    assert all(abs(f["ics_cosine"] - 1) < 1e-6 for f in found)


@pytest.mark.slow
def test_training_is_bit_identical_with_the_probe_on_and_off(tiny_mnist):
    """Adam (slots and a step count to restore), BN, noisy BN (a step counter its noise is drawn from)."""
    runs = {}
    for on in (True, False):
        base = tiny(
            **{
                "optimizer.name": "adam",
                "optimizer.learning_rate": 0.01,
                "diagnostics.ics": on,
                "precise_bn.enabled": False,  # not compared here: training and the batch-statistics rows are
            }
        )
        c = config.validate(
            {
                **parse_yaml(dump(base)),
                "arms": [
                    {"name": "plain"},
                    {"name": "bn", "normalizer": "batch_norm"},
                    {"name": "noisy", "normalizer": "noisy_bn"},
                ],
            }
        )
        trainer = train.Trainer(c, tiny_mnist, initial_weights(c))
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


def training_mode_bands(c, tiny_mnist, arm_spec: dict) -> list[list[float]]:
    """The probe's training-mode percentiles of unit 1, per hidden layer, of one arm at its initial weights."""
    c = config.validate({**parse_yaml(dump(c)), "arms": [arm_spec]})
    network = build_network(c, initial_weights(c), arms.of(c)[0])
    optimizer = objectives.make_optimizer(c)
    optimizer.build(network.parameters)
    found = ics.ICS(network, objectives.loss_function(c["loss"]), optimizer, tiny_mnist.validation.images[:50], 1)
    return [
        [layer[q] for q in schema.TRAINING_UNIT_PERCENTILES]
        for layer in found.probe(tiny_mnist.train.images[:30], tiny_mnist.train.labels[:30])
    ]


def test_training_mode_bands_are_the_units_percentiles_with_batch_statistics_and_the_noise(tiny_mnist):
    """Plain: the inference-mode percentiles of bn_lab.probes.diagnostics (no difference between the
    modes); BN: numpy's percentiles of the unit's input normalized over the probe images; noisy
    BN: BN's with the noise off, others with it on."""
    c = tiny(**{"model.activation": "sigmoid", "diagnostics.unit": 1})
    images = tiny_mnist.validation.images[:50]
    network = build_network(c, initial_weights(c), arms.of(c)[0])
    inference = diagnostics.Probe(c, network, images, jit=False, norm_power=2).measure(np.zeros(len(network.hidden)))[0]
    plain = training_mode_bands(c, tiny_mnist, {"name": "plain"})
    for layer, found in zip(inference, plain):
        np.testing.assert_allclose(found, [layer[q] for q in schema.UNIT_PERCENTILES], rtol=1e-5, atol=1e-6)
    x = models.to_inputs(images, (784,)).numpy()
    h = x @ initial_weights(c)[0][:, 1]  # unit 1 of layer 1, before BN (no bias with BN)
    normalized = (h - h.mean()) / np.sqrt(h.var() + 1e-3)
    bn = training_mode_bands(c, tiny_mnist, {"name": "bn", "normalizer": "batch_norm"})
    np.testing.assert_allclose(bn[0], np.percentile(normalized, [15, 50, 85]), rtol=1e-4, atol=1e-5)
    quiet = {"n_mu": 0.0, "n_sigma": 1.0, "r_mu": 0.0, "r_sigma": 0.0}
    assert training_mode_bands(c, tiny_mnist, {"name": "n", "normalizer": "noisy_bn", "options": quiet}) == bn
    noisy = training_mode_bands(c, tiny_mnist, {"name": "n", "normalizer": "noisy_bn"})
    assert all(abs(a - b) > 1e-3 for layer, bn_layer in zip(noisy, bn) for a, b in zip(layer, bn_layer))


def test_the_summarys_covariate_shift_figures():
    """Band motion: the mean over consecutive evaluations of the mean |change| of the three
    training-mode percentiles, last hidden layer, raw and over the band's width; ICS means from
    step 1 on, every layer; inf is null."""
    from bn_lab.training import summary

    def rows(step, layer, bands, l2, cosine):
        values = dict(zip(schema.TRAINING_UNIT_PERCENTILES, bands), ics_l2=l2, ics_cosine=cosine)
        return [dict(variant="a", step=step, layer=layer, quantity=q, value=v) for q, v in values.items()]

    found = (
        rows(0, 2, (0.0, 1.0, 2.0), 5.0, 0.1)
        + rows(10, 2, (1.0, 1.0, 2.0), 1.0, 0.5)  # moved (1 + 0 + 0) / 3
        + rows(20, 2, (1.0, 3.0, 3.0), 2.0, 0.7)  # moved (0 + 2 + 1) / 3
        + rows(10, 1, (9.0, 9.0, 9.0), 9.0, 0.9)  # another layer: not the last
    )
    assert summary.covariate_shift(found, "a") == {
        "layer": 2,
        "band_motion": pytest.approx((1 / 3 + 1) / 2),
        # over the band's mean width, (2 + 1 + 2) / 3
        "band_motion_relative": pytest.approx((1 / 3 + 1) / 2 / (5 / 3)),
        "ics_l2": 1.5,
        "ics_relative": None,  # not in these rows
        "ics_cosine": pytest.approx(0.6),
        "layers": [
            {"layer": 1, "ics_l2": 9.0, "ics_relative": None, "ics_cosine": 0.9},
            {"layer": 2, "ics_l2": 1.5, "ics_relative": None, "ics_cosine": pytest.approx(0.6)},
        ],
    }
    assert summary.covariate_shift(found, "b") is None
    kernel = [dict(variant="a", step=5, layer=1, quantity="kernel_norm", value=float("inf"))]
    assert summary.last_hidden_layer(kernel, "a") == {"step": 5, "layer": 1, "kernel_norm": None}
