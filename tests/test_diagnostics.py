"""Inside the network: diagnostics equal a numpy computation, and probes never change the network."""

import csv
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bn_lab import api
from bn_lab.config import arms
from bn_lab.nets import network as models
from bn_lab.probes import diagnostics, landscape
from bn_lab.store import rundir, schema
from bn_lab.training import train
from tests.conftest import TINY_DATA, initial_weights, numpy_mlp, snapshot, tiny_mlp_config

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors


def tiny_config(activation: str = "relu", **diagnostics_options) -> dict:
    options = {
        "model.activation": activation,
        "init.scale": 0.3,
        "diagnostics.enabled": True,
        "diagnostics.probe_images": 150,
        "diagnostics.unit": 3,
    }
    options.update({f"diagnostics.{k}": v for k, v in diagnostics_options.items()})
    return tiny_mlp_config(**options)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("variant", arms.LESSON_NAMES)
def test_diagnostics_equal_numpy_on_the_same_probe_activations(tiny_mnist, activation, variant, monkeypatch):
    monkeypatch.setattr(diagnostics, "HISTOGRAM_VALUES", 1000)  # fewer than the probe's values: a subset
    cfg = tiny_config(activation)
    trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg), arms=(variant,))
    trainer.train_steps(20)
    network = trainer.networks[variant]
    before = snapshot(network)
    rows, histograms = trainer.measure(variant, 20)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(network))), "the probe changed the network"

    # The same probe images through the same weights, by hand (inference mode: the population statistics).
    probe = tiny_mnist.validation.images[:150]
    _, activation_inputs, _ = numpy_mlp(network.named_arrays(), probe, activation, cfg["bn"]["epsilon"], "population")
    got = {(r["layer"], r["quantity"]): r["value"] for r in rows}
    for layer, h in enumerate(activation_inputs, start=1):
        np.testing.assert_allclose(
            [got[(layer, f"unit_p{q}")] for q in (15, 50, 85)],
            np.percentile(h[:, 3], [15, 50, 85]),
            rtol=1e-4,
            atol=1e-5,
        )
        for quantity, value in (
            ("unit_mean_mean", h.mean(axis=0).mean()),
            ("unit_mean_std", h.mean(axis=0).std()),
            ("unit_std_mean", h.std(axis=0).mean()),
            ("unit_std_std", h.std(axis=0).std()),
        ):
            np.testing.assert_allclose(got[(layer, quantity)], value, rtol=1e-4, atol=1e-5, err_msg=quantity)
        if activation == "relu":
            assert got[(layer, "dead_fraction")] == pytest.approx((h <= 0).all(axis=0).mean())
        else:
            assert got[(layer, "saturated_fraction")] == pytest.approx(((np.abs(h) > 4).mean(axis=0) >= 0.95).mean())
        kernel = network.kernels[layer - 1].numpy()
        norms = np.linalg.norm(kernel, axis=0)
        assert got[(layer, "kernel_norm")] == pytest.approx(norms.mean(), rel=1e-5)
        if variant == "with_bn":  # lr/‖w‖², mean over columns, from the kernel itself
            assert got[(layer, "effective_lr")] == pytest.approx((0.5 / norms**2).mean(), rel=1e-5)
        else:
            assert (layer, "effective_lr") not in got
        # The histogram's values: every unit of evenly spaced probe images.
        np.testing.assert_allclose(histograms[layer - 1], h[:: max(1, h.size // 1000)].ravel(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_with_adam_the_effective_learning_rate_is_lr_over_the_norm(tiny_mnist):
    """Adam's step is ~lr per weight whatever the gradient's scale: it turns a BN layer's kernel
    column w as lr/‖w‖ would at unit norm (SGD's, lr/‖w‖², is in the test above)."""
    cfg = tiny_config("relu")
    cfg["optimizer"] = {"name": "adam", "learning_rate": 0.002}
    trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg), arms=("with_bn",))
    trainer.train_steps(5)
    rows, _ = trainer.measure("with_bn", 5)
    for layer, kernel in enumerate(trainer.networks["with_bn"].kernels[:-1], start=1):
        norms = np.linalg.norm(kernel.numpy(), axis=0)
        got = next(r["value"] for r in rows if (r["layer"], r["quantity"]) == (layer, "effective_lr"))
        assert got == pytest.approx((0.002 / norms).mean(), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("steps", [0, 7])
def test_the_gradient_norm_is_that_of_the_training_step(tiny_mnist, steps):
    """After k steps, the norm of step k's gradient (at the weights before it, on its batch);
    before any step, that of the first step. Taken at step 0, it leaves the network as it was."""
    cfg = tiny_config("relu")
    trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg), arms=("with_bn",))
    reference = train.Trainer(cfg, tiny_mnist, initial_weights(cfg), arms=("with_bn",))
    if steps:
        trainer.train_steps(steps)
        reference.train_steps(steps - 1)
    network = reference.networks["with_bn"]
    batch = trainer.batches.indices[max(steps - 1, 0)].numpy()
    with tf.GradientTape() as tape:  # the step's gradient, eagerly, outside bn_lab's training loop
        loss = reference.loss(
            network(models.to_inputs(tiny_mnist.train.images[batch], network.input_shape), training=True),
            tiny_mnist.train.labels[batch],
        )
    expected = [np.linalg.norm(g.numpy()) for g in tape.gradient(loss, network.kernels[:-1])]
    before = snapshot(trainer.networks["with_bn"])
    rows, _ = trainer.measure("with_bn", steps)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(trainer.networks["with_bn"])))
    got = [r["value"] for r in rows if r["quantity"] == "gradient_norm"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert min(got) > 0


@pytest.mark.slow
def test_the_conv_nets_gradient_norm_before_any_step_is_that_of_the_first_step(tiny_mnist):
    """The conv net's training step computes BN's layer ends XLA-compiled (its fast path). Before any
    step, the diagnostics' gradient norms must be those that step takes: another formulation of the
    same network (plain ops for the layer ends) gave the 20-layer net's norms up to 1.6% apart."""
    from bn_lab.config import loading

    cfg = loading.validate(
        {
            "model": {"name": "convnet", "activation": "relu", "conv_layers": 16, "dense_units": 32},
            "init": {"distribution": "glorot_uniform"},
            "optimizer": {"name": "adam", "learning_rate": 0.002},
            "loss": "sigmoid_cross_entropy",
            "train": {"batch_size": 16, "steps": 2, "eval_every": 2, "jit_compile": False, "single_samples": 10},
            "diagnostics": {"enabled": True, "probe_images": 20},
            "data": dict(TINY_DATA),
        }
    )
    trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg), arms=("with_bn",))
    rows, _ = trainer.measure("with_bn", 0)
    before = [r["value"] for r in rows if r["quantity"] == "gradient_norm"]
    trainer.train_steps(1)  # the chunk's last step is the first: the norms it took
    np.testing.assert_allclose(before, trainer.gradient_norms["with_bn"], rtol=1e-4)


@pytest.mark.slow
def test_a_layer_of_dead_units_is_counted(tiny_mnist):
    cfg = tiny_config("relu")
    trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg), arms=("without_bn",))
    kernel = trainer.networks["without_bn"].kernels[1]
    kernel.assign(-np.abs(kernel.numpy()))  # layer 1's outputs are >= 0: every unit of layer 2 is dead
    rows, _ = trainer.measure("without_bn", 0)
    _, inputs, _ = numpy_mlp(trainer.networks["without_bn"].named_arrays(), tiny_mnist.validation.images[:150], "relu")
    layer1 = float((inputs[0] <= 0).all(axis=0).mean())  # layer 1 as it is, by hand
    assert {r["layer"]: r["value"] for r in rows if r["quantity"] == "dead_fraction"} == {
        1: pytest.approx(layer1),
        2: 1.0,
    }


@pytest.mark.slow
def test_the_landscape_probe_measures_on_the_batch_the_next_step_trains_on(tiny_mnist):
    """Santurkar's landscape "at a particular training step": after 10 steps, the batch of step 10
    (the one the next step takes), not step 9's."""
    cfg = tiny_config("relu", landscape=True)
    trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg), arms=("with_bn",))
    trainer.train_steps(10)
    found = {r["quantity"]: r["value"] for r in trainer.measure("with_bn", 10)[0] if r["layer"] == "all"}
    probe = landscape.Landscape(cfg, trainer.networks["with_bn"], trainer.loss, jit=False)
    assert found == probe.probe(*trainer.batches.at(10))
    assert found != probe.probe(*trainer.batches.at(9))


@pytest.mark.slow
def test_the_landscape_probe_at_step_zero_is_the_plain_loss_and_gradient(tiny_mnist):
    cfg = tiny_config("relu")
    trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg), arms=("with_bn",))
    trainer.train_steps(10)
    network = trainer.networks["with_bn"]
    images, labels = trainer.next_batch()
    probe = landscape.Landscape(cfg, network, trainer.loss, jit=False)
    before = snapshot(network)
    loss, gradient, losses, changes, distances = probe.at(images, labels, [0.0, 0.5])
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(network)))

    import tensorflow as tf

    saved = [s.numpy() for s in network.population_statistics]
    with tf.GradientTape() as tape:  # the plain loss and gradient, in training mode, as a training step
        plain = trainer.loss(network(models.to_inputs(images, network.input_shape), training=True), labels)
    plain_gradient = np.concatenate([g.numpy().ravel() for g in tape.gradient(plain, network.parameters)])
    for s, value in zip(network.population_statistics, saved):
        s.assign(value)
    assert losses[0] == pytest.approx(float(plain), rel=1e-6) and loss == pytest.approx(float(plain), rel=1e-6)
    np.testing.assert_allclose(gradient, plain_gradient, rtol=1e-5, atol=1e-7)
    assert changes[0] == pytest.approx(0, abs=1e-6) and distances[0] == 0
    assert changes[1] > 0 and distances[1] == pytest.approx(0.5 * np.linalg.norm(plain_gradient), rel=1e-5)


@pytest.mark.slow
def test_training_is_bit_identical_with_every_probe_on_and_off(tiny_mnist):
    finished = {}
    for on in (True, False):
        cfg = tiny_config("relu", enabled=on, landscape=on)
        cfg["precise_bn"]["enabled"] = on
        trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg))
        result = trainer.run()
        finished[on] = (result, [snapshot(n) for n in trainer.networks.values()])
    (probed, nets_on), (plain, nets_off) = finished[True], finished[False]
    assert all(np.array_equal(a, b) for x, y in zip(nets_on, nets_off) for a, b in zip(x, y))
    keep = lambda e: (e.variant, e.step, e.split, e.loss, e.accuracy)  # noqa: E731
    assert [keep(e) for e in probed.evaluations if e.split != schema.PRECISE_BN] == [keep(e) for e in plain.evaluations]
    assert plain.diagnostics == []
    # Every quantity of every hidden layer, and the landscape's of the whole network, nothing else.
    found = {(r["variant"], r["layer"], r["quantity"]) for r in probed.diagnostics}
    per_layer = {*diagnostics.UNIT, *diagnostics.SPREAD, "dead_fraction", "kernel_norm", "gradient_norm"}
    for variant in arms.LESSON_NAMES:
        for layer in (1, 2):
            expected = per_layer | ({"effective_lr"} if variant == "with_bn" else set())
            assert {q for v, at, q in found if (v, at) == (variant, layer)} == expected, (variant, layer)
        landscape_rows = {*landscape.QUANTITIES, *(edge for band in schema.LANDSCAPE_BANDS.values() for edge in band)}
        assert {q for v, at, q in found if (v, at) == (variant, "all")} == landscape_rows, variant


@pytest.mark.slow
def test_a_smoke_run_writes_diagnostics_and_their_figures(tmp_path):
    run = api.run(
        Path(__file__).parent.parent / "configs" / "smoke.yaml",
        out=tmp_path / "run",
        progress="none",
        **{
            "diagnostics.enabled": True,
            "diagnostics.landscape": True,
            "diagnostics.paper_figure": True,
            "train.steps": 60,
            "train.eval_every": 20,
            "train.test_every": 20,
        },
    )
    with open(run.path / rundir.DIAGNOSTICS, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == schema.DIAGNOSTICS_COLUMNS
    steps = sorted({int(r["step"]) for r in rows})
    assert steps == [0, 20, 40, 60]
    layers = {r["layer"] for r in rows if r["variant"] == "with_bn"}
    assert layers == {"1", "2", "3", "all"}
    for name in (rundir.DIAGNOSTICS_PLOT, rundir.LANDSCAPE_PLOT, rundir.PAPER_FIG1_PLOT):
        assert (run.path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = [p for p in (run.path / "tensorboard" / "with_bn").iterdir()]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0].parent)).Reload()
    assert "activation_input/layer3" in accumulator.Tags()["histograms"] + accumulator.Tags()["tensors"]
    # TensorBoard's scalars are diagnostics.csv's numbers (as float32).
    written = {
        (int(e.step)): float(tf.make_ndarray(e.tensor_proto))
        for e in accumulator.Tensors("diagnostics/layer2/kernel_norm")
    }
    in_csv = {
        int(r["step"]): float(r["value"])
        for r in rows
        if (r["variant"], r["layer"], r["quantity"]) == ("with_bn", "2", "kernel_norm")
    }
    assert written.keys() == in_csv.keys() == {0, 20, 40, 60}
    # summary.json: the last hidden layer at the last evaluation, as diagnostics.csv has it.
    end = run.summary["variants"]["with_bn"]["diagnostics"]
    last = {
        r["quantity"]: float(r["value"])
        for r in rows
        if (r["variant"], r["layer"], r["step"]) == ("with_bn", "3", "60")
    }
    assert (end["step"], end["layer"]) == (60, 3)
    assert end["effective_lr"] == last["effective_lr"] and end["dead_fraction"] == last["dead_fraction"]
    assert "effective_lr" not in run.summary["variants"]["without_bn"]["diagnostics"]  # BN networks only
    # The effective learning rate at the end is lr/‖w‖² (plain SGD) of the kernels the run saved.
    weights, lr = run.weights("with_bn"), run.config["optimizer"]["learning_rate"]
    for layer in (1, 2, 3):
        norms = np.linalg.norm(weights[f"layer{layer}/kernel"], axis=0)
        value = next(
            float(r["value"])
            for r in rows
            if (r["variant"], r["layer"], r["step"], r["quantity"]) == ("with_bn", str(layer), "60", "effective_lr")
        )
        assert value == pytest.approx((lr / norms**2).mean(), rel=1e-5)
    assert "layer4/bias" in weights and "layer4/gamma" not in weights and "layer1/bias" not in weights
    # The API reads what the files hold, and draws the same figure.
    assert run.diagnostics["step"].count(60) == sum(1 for r in rows if r["step"] == "60")
    assert set(run.diagnostics["layer"]) == {1, 2, 3, "all"}
    assert len(run.diagnostics_plot().axes) == 2 + 2 * 5 + 1
    assert all(written[k] == np.float32(in_csv[k]) for k in in_csv)
    assert diagnostics.inactive_quantity("relu") == "dead_fraction"


def test_diagnostics_png_shows_a_network_that_diverged_at_once(tmp_path):
    """One row per quantity, without | with BN; the effective learning rate (BN only) across its row;
    a network measured once (it diverged in its first chunk) is drawn as points, not an empty panel."""
    quantities = {
        "unit_p15": -1.0,
        "unit_p50": 0.0,
        "unit_p85": 1.0,
        "unit_mean_mean": 0.0,
        "unit_mean_std": 0.1,
        "unit_std_mean": 1.0,
        "unit_std_std": 0.1,
        "dead_fraction": 0.2,
        "kernel_norm": 3.0,
        "gradient_norm": 0.5,
    }
    rows = [
        dict(variant="without_bn", step=0, layer=layer, quantity=q, value=v)
        for layer in (1, 2)
        for q, v in quantities.items()
    ]
    rows += [
        dict(variant="with_bn", step=step, layer=layer, quantity=q, value=v)
        for step in (0, 10, 20)
        for layer in (1, 2)
        for q, v in {**quantities, "effective_lr": 0.05}.items()
    ]
    from bn_lab.report import inside_figures

    figure = inside_figures.diagnostics_figure(rows, 2, "title", 0, {"without_bn": 3})
    titles = [ax.get_title() for ax in figure.axes]
    assert len(figure.axes) == 2 + 2 * 5 + 1 and not any(
        "not measured" in t.get_text() for ax in figure.axes for t in ax.texts
    )
    (wide,) = [ax for ax, t in zip(figure.axes, titles) if "effective learning rate" in t]
    assert wide.get_title().startswith("with BN") and wide.get_position().width > 0.8
    lone = [
        line
        for ax, t in zip(figure.axes, titles)
        if t.startswith("without BN")
        for line in ax.lines
        if len(line.get_xdata()) == 1
    ]
    assert len(lone) == 2 * 5 + 1 and all(line.get_marker() == "o" for line in lone)  # 2 layers x 5 rows, 1 median


def test_diagnostics_png_keeps_a_bad_inits_step_zero_off_the_scale():
    """At a bad init the untrained network's activation inputs are ~1e4 (the BN network's too: its
    population statistics start at 0 and 1). Its later values, ~1, stay readable; step 0 is named."""
    from bn_lab.report import inside_figures

    later = {
        "unit_p15": -1.0,
        "unit_p50": 0.0,
        "unit_p85": 1.0,
        "unit_mean_mean": 0.2,
        "unit_mean_std": 0.1,
        "unit_std_mean": 1.0,
        "unit_std_std": 0.2,
        "dead_fraction": 0.4,
        "kernel_norm": 50.0,
        "effective_lr": 8e-4,
        "gradient_norm": 0.05,
    }
    rows = [
        dict(
            variant="with_bn",
            step=step,
            layer=1,
            quantity=q,
            value=v * (3e4 if step == 0 and "unit" in q else 1) + 0.01 * step,
        )
        for step in (0, 10, 20, 30)
        for q, v in later.items()
    ]
    figure = inside_figures.diagnostics_figure(rows, 1, "title", 0)
    (band,) = [ax for ax in figure.axes if ax.get_title().startswith("with BN: layer 1")]
    (means,) = [ax for ax in figure.axes if ax.get_title().startswith("with BN: per-unit mean")]
    assert band.get_ylim()[1] < 3 and means.get_ylim()[1] < 3
    assert [t.get_text() for t in band.texts] == ["step 0 off the scale (-3e+04 to 3e+04)"]
    (dead,) = [ax for ax in figure.axes if ax.get_title().startswith("with BN: dead")]
    assert not dead.texts and dead.get_ylim()[1] < 1  # step 0 within the later values' range: drawn to scale
    # Flat later values (every unit dead from step 10 on) and a step 0 just below them: to scale, not named.
    flat = [dict(r, value=1.0 if r["step"] else 0.98) if r["quantity"] == "dead_fraction" else r for r in rows]
    (dead,) = [
        ax
        for ax in inside_figures.diagnostics_figure(flat, 1, "title", 0).axes
        if ax.get_title().startswith("with BN: dead")
    ]
    assert not dead.texts and dead.get_ylim()[0] < 0.98 < 1.0 < dead.get_ylim()[1]
