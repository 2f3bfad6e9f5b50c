"""The batch in batch norm (Wu & Johnson 2021; Ioffe 2017): ghost batches (`group_size`) in every
batch-statistics normalizer against numpy, the default bit for bit as before, evaluation with batch
statistics and the batch-size curve against numpy from the saved weights, class-grouped batches."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bn_lab import api, registry
from bn_lab.config import arms
from bn_lab.config.yaml_io import ConfigError
from bn_lab.data import batches
from bn_lab.nets import normalizers
from bn_lab.nets.bn import groups
from bn_lab.store import schema
from bn_lab.training import evaluation, launch, summary, train
from tests.conftest import (
    CONFIGS,
    bnlab,
    initial_weights,
    numpy_loss_and_accuracy,
    numpy_mlp,
    snapshot,
    tiny_mlp_config,
)
from tests.test_normalizers import CONV, DENSE, EPSILON, batch, with_affine

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors

MOMENTUM = 0.9


def numpy_groups(x: np.ndarray, group_size: int):
    """x normalized per group of group_size consecutive examples, and the groups' mean moments."""
    grouped = x.reshape(len(x) // group_size, group_size, *x.shape[1:])
    axes = tuple(range(1, grouped.ndim - 1))
    mean, variance = grouped.mean(axis=axes, keepdims=True), grouped.var(axis=axes, keepdims=True)
    normalized = ((grouped - mean) / np.sqrt(variance + EPSILON)).reshape(x.shape)
    over = tuple(range(grouped.ndim - 1))
    return normalized, mean.mean(axis=over), variance.mean(axis=over), grouped


# --- ghost batches in each normalizer ------------------------------------------------------------


@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
@pytest.mark.parametrize("backend", registry.BN_BACKENDS.names())
def test_batch_norm_in_groups_equals_numpy_for_every_backend(backend, shape):
    norm = normalizers.make("batch_norm", shape, backend=backend, momentum=MOMENTUM, epsilon=EPSILON, group_size=2)
    gamma, beta = with_affine(norm)
    x = batch(shape, n=8)
    expected, mean, variance, _ = numpy_groups(x, 2)
    np.testing.assert_allclose(norm(tf.constant(x), training=True).numpy(), expected * gamma + beta, atol=2e-5)
    # The population moves towards the groups' statistics, averaged over the groups.
    np.testing.assert_allclose(norm.population_mean.numpy(), (1 - MOMENTUM) * mean, atol=1e-6)
    np.testing.assert_allclose(norm.population_variance.numpy(), MOMENTUM + (1 - MOMENTUM) * variance, atol=1e-6)
    # What exact statistics average over batches: the same groups' mean moments.
    batch_mean, batch_variance = norm.batch_moments(tf.constant(x))
    np.testing.assert_allclose(batch_mean.numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(batch_variance.numpy(), variance, atol=1e-5)
    # Inference mode has no groups: the population statistics, per example.
    population = norm.population_mean.numpy(), norm.population_variance.numpy()
    inferred = (x - population[0]) / np.sqrt(population[1] + EPSILON) * gamma + beta
    np.testing.assert_allclose(norm(tf.constant(x), training=False).numpy(), inferred, atol=2e-5)


@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
@pytest.mark.parametrize("backend", registry.BN_BACKENDS.names())
def test_the_default_is_the_backends_own_formulation_bit_for_bit(backend, shape):
    """group_size 0 (and a group as large as the batch) takes each backend's code path as it was:
    Keras' layer, tf.nn.moments + tf.nn.batch_normalization, the arithmetic written out."""
    x = tf.constant(batch(shape, n=8))
    axes = list(range(len(x.shape) - 1))
    made = {
        g: normalizers.make("batch_norm", shape, backend=backend, momentum=MOMENTUM, epsilon=EPSILON, group_size=g)
        for g in (0, 8)
    }
    for norm in made.values():
        with_affine(norm)
    gamma, beta = made[0].gamma, made[0].beta
    if backend == "keras":
        layer = tf.keras.layers.BatchNormalization(momentum=MOMENTUM, epsilon=EPSILON)
        layer.build(x.shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        expected, population = layer(x, training=True), [layer.moving_mean, layer.moving_variance]
    else:
        mean, variance = tf.nn.moments(x, axes)
        if backend == "tf_nn":
            expected = tf.nn.batch_normalization(x, mean, variance, beta, gamma, EPSILON)
        else:
            mean = tf.reduce_mean(x, axis=axes)
            variance = tf.reduce_mean(tf.square(x - mean), axis=axes)
            expected = (x - mean) / tf.sqrt(variance + EPSILON) * gamma + beta
        population = [mean * (1 - MOMENTUM), 1.0 * MOMENTUM + variance * (1 - MOMENTUM)]
    for g, norm in made.items():
        assert np.array_equal(norm(x, training=True).numpy(), expected.numpy()), g
        for got, want in zip(norm.population_statistics, population):
            assert np.array_equal(got.numpy(), np.asarray(want)), g


def test_batch_renorm_in_groups_corrects_each_group_towards_the_population():
    norm = normalizers.make(
        "batch_renorm", DENSE, r_max=1.5, d_max=0.5, momentum=MOMENTUM, epsilon=EPSILON, group_size=4
    )
    gamma, beta = with_affine(norm)
    population_mean = np.linspace(-1, 1, DENSE[0]).astype(np.float32)
    population_stddev = np.linspace(0.5, 3, DENSE[0]).astype(np.float32)
    norm.population_mean.assign(population_mean)
    norm.population_stddev.assign(population_stddev)
    x = batch(DENSE, n=8)
    _, mean, _, grouped = numpy_groups(x, 4)
    group_mean = grouped.mean(axis=1, keepdims=True)
    group_stddev = np.sqrt(grouped.var(axis=1, keepdims=True) + EPSILON)
    r = np.clip(group_stddev / population_stddev, 1 / 1.5, 1.5)
    d = np.clip((group_mean - population_mean) / population_stddev, -0.5, 0.5)
    expected = (((grouped - group_mean) / group_stddev * r + d) * gamma + beta).reshape(x.shape)
    np.testing.assert_allclose(norm(tf.constant(x), training=True).numpy(), expected, atol=2e-5)
    np.testing.assert_allclose(
        norm.population_mean.numpy(), MOMENTUM * population_mean + (1 - MOMENTUM) * mean, atol=1e-6
    )
    stddev = group_stddev.mean(axis=(0, 1))
    np.testing.assert_allclose(
        norm.population_stddev.numpy(), MOMENTUM * population_stddev + (1 - MOMENTUM) * stddev, atol=1e-6
    )


def test_noisy_bn_without_noise_in_groups_is_batch_norm_in_groups():
    x = tf.constant(batch(CONV, n=8))
    plain = normalizers.make("batch_norm", CONV, group_size=4)
    quiet = normalizers.make("noisy_bn", CONV, group_size=4, n_mu=0.0, n_sigma=1.0, r_mu=0.0, r_sigma=0.0)
    assert np.array_equal(plain(x, training=True).numpy(), quiet(x, training=True).numpy())


@pytest.mark.parametrize(
    "name, options",
    [("batch_norm", {"backend": b}) for b in registry.BN_BACKENDS.names()]
    + [("batch_renorm", {"r_max": 1.5, "d_max": 0.5}), ("noisy_bn", {"n_mu": 0.0, "n_sigma": 1.0, "r_sigma": 0.0})],
)
def test_a_group_size_given_as_a_tensor_serves_every_size_from_one_trace(name, options):
    """The batch-size curve's way: one traced function, the group size a tensor, the batch's size
    unknown when traced; each size normalizes as that static group size does (itself numpy's,
    above), and batch norm's as numpy's groups."""
    x = batch(CONV, n=8)
    norm = normalizers.make(name, CONV, momentum=MOMENTUM, epsilon=EPSILON, **options)
    gamma, beta = with_affine(norm)
    signature = [tf.TensorSpec((None, *CONV), tf.float32), tf.TensorSpec([], tf.int32)]
    in_groups = tf.function(lambda x, group: norm(x, True, group), input_signature=signature, autograph=False)
    for group_size in (1, 2, 4, 8):
        saved = [v.numpy() for v in norm.population_statistics]
        got = in_groups(tf.constant(x), tf.constant(group_size)).numpy()
        for variable, value in zip(norm.population_statistics, saved):
            variable.assign(value)
        np.testing.assert_allclose(got, norm(tf.constant(x), True, group_size).numpy(), atol=1e-6)
        if name == "batch_norm":
            np.testing.assert_allclose(got, numpy_groups(x, group_size)[0] * gamma + beta, atol=2e-5)
    assert in_groups.experimental_get_tracing_count() == 1


def test_a_batch_that_does_not_split_into_groups_is_one_group():
    assert [groups.count(n, 4) for n in (1, 2, 4, 6, 8, 60)] == [1, 1, 1, 1, 2, 15]
    assert groups.count(60, 0) == 1
    norm = normalizers.make("batch_norm", DENSE, backend="manual", group_size=4)
    x = batch(DENSE, n=3)  # a check's batch smaller than a group
    expected = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-3)
    np.testing.assert_allclose(norm(tf.constant(x), training=True).numpy(), expected, atol=2e-5)


# --- the config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dotted, message",
    [
        (
            {"bn.group_size": 7},
            "config: bn.group_size 7 does not divide train.batch_size 30; allowed: 0 (the whole batch) or a divisor of 30 (1, 2, 3, 5, 6, 10, 15, 30)",
        ),
        ({"bn.group_size": -2}, "config: bn.group_size must be >= 0, got -2"),
        (
            {"data.batch_order": "sorted"},
            "config: data.batch_order: unknown value 'sorted'; allowed: iid, class_grouped",
        ),
        ({"data.classes_per_batch": 11}, "config: data.classes_per_batch 11 is more than the dataset's 10 classes"),
    ],
)
def test_bad_batch_settings_are_one_line_naming_the_key(dotted, message):
    with pytest.raises(ConfigError) as error:
        tiny_mlp_config(**dotted)
    assert str(error.value) == message


def test_an_arms_group_size_is_checked_against_the_batch():
    given = [{"name": "bn4", "normalizer": "batch_renorm", "options": {"group_size": 4}}]
    with pytest.raises(ConfigError) as error:
        tiny_mlp_config(arms=given)
    assert str(error.value).startswith(
        "config: arms[0] (bn4): batch_renorm: group_size 4 does not divide train.batch_size 30; allowed:"
    )
    assert tiny_mlp_config(arms=given, **{"train.batch_size": 20})["arms"][0]["options"]["group_size"] == 4
    # The bn section's group size is every BN arm's default, as its other options are.
    resolved = tiny_mlp_config(**{"bn.group_size": 5})
    assert [a.options.get("group_size") for a in arms.of(resolved)] == [None, 5]


def test_classes_per_batch_more_than_the_batch_is_refused():
    with pytest.raises(ConfigError) as error:
        tiny_mlp_config(**{"data.batch_order": "class_grouped", "data.classes_per_batch": 10, "train.batch_size": 8})
    assert str(error.value) == (
        "config: data.classes_per_batch 10 is more than train.batch_size 8: each class needs at least one example in a batch"
    )


@pytest.mark.slow
def test_class_grouped_batches_need_the_classes_among_the_kept_images_checked_before_training(tmp_path):
    """The first 10 training images of MNIST hold 8 classes: 9 per batch is refused as the config is
    read, before TensorFlow starts (it was a ValueError after) (issue 33)."""
    done = bnlab(
        "run",
        CONFIGS / "smoke.yaml",
        *("--set", "data.batch_order=class_grouped", "--set", "data.classes_per_batch=9"),
        *("--set", "data.train_limit=10", "--set", "train.batch_size=10", "--out", tmp_path / "run"),
    )
    assert (done.returncode, done.stderr) == (
        2,
        f"error: {CONFIGS / 'smoke.yaml'} (with --set): data.classes_per_batch 9: the 10 training images hold "
        "only 8 classes (0, 1, 3, 4, 6, 7, 8, 9); "
        "lower data.classes_per_batch or raise data.train_limit\n",
    )
    assert not (tmp_path / "run").exists()


# --- class-grouped batches ----------------------------------------------------------------------


def test_class_grouped_batches_hold_the_configured_classes_evenly_and_reproducibly(tiny_mnist):
    labels = tiny_mnist.train.labels  # real MNIST labels, 600 images
    order = batches.class_grouped_order(seed=3, labels=labels, batch_size=30, steps=200, classes=3)
    assert order.shape == (200, 30) and order.dtype == np.int32
    for indices in order:
        found, counts = np.unique(labels[indices], return_counts=True)
        assert len(found) == 3 and list(counts) == [10, 10, 10]
    # Each class's images are taken epoch by epoch: over the run, every image of a class is seen
    # as often as any other (give or take one, the epoch under way).
    seen = np.bincount(order.ravel(), minlength=len(labels))
    for c in np.unique(labels):
        assert seen[labels == c].max() - seen[labels == c].min() <= 1, c
    # Shuffled within the batch (groups of the batch mix its classes), seeded.
    first = labels[order[:, :10]]
    assert not all(len(np.unique(row)) == 1 for row in first)
    assert np.array_equal(order, batches.class_grouped_order(3, labels, 30, 200, 3))
    assert not np.array_equal(order, batches.class_grouped_order(4, labels, 30, 200, 3))
    uneven = batches.class_grouped_order(0, labels, 30, 5, 4)  # 30 = 8 + 8 + 7 + 7
    assert all(sorted(np.unique(labels[b], return_counts=True)[1]) == [7, 7, 8, 8] for b in uneven)


@pytest.mark.slow
def test_a_run_trains_on_the_configured_batch_order(tiny_mnist):
    iid = tiny_mlp_config()
    grouped = tiny_mlp_config(**{"data.batch_order": "class_grouped", "data.classes_per_batch": 2})
    for cfg, classes in ((iid, None), (grouped, 2)):
        trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg))
        per_batch = [len(np.unique(trainer.batches.at(step)[1])) for step in range(40)]
        if classes:
            assert set(per_batch) == {2}
        else:
            assert min(per_batch) >= 5  # 30 i.i.d. images of 10 classes
    assert np.array_equal(
        train.Trainer(iid, tiny_mnist, initial_weights(iid)).batches.indices.numpy(),
        batches.batch_order(iid["seed"], len(tiny_mnist.train.labels), 30, 40),
    )


# --- evaluation with batch statistics, and the batch-size curve ------------------------------------


def numpy_in_batches(arrays, images, labels, size, group_size=0):
    """Training mode by hand: each batch of `size` images (each group of it) normalized by its own moments."""
    step = group_size if group_size and size % group_size == 0 and size > group_size else size
    logits = np.concatenate(
        [numpy_mlp(arrays, images[i : i + step], "relu")[0] for i in range(0, len(labels) // size * size, step)]
    )
    return numpy_loss_and_accuracy(logits, labels[: len(logits)])


@pytest.fixture(scope="module")
def grouped_run(tmp_path_factory, tiny_mnist):
    """A tiny pair with BN in groups of 5 of its batches of 30; training mode's checks in calls of at
    most 70 images (whole groups: several calls, the last one shorter)."""
    cfg = tiny_mlp_config(**{"bn.group_size": 5, "train.eval_batch_size": 70})
    return api.load(launch.run_config(cfg, out=tmp_path_factory.mktemp("grouped") / "run", progress="none")), cfg


@pytest.mark.slow
def test_batch_statistics_evaluation_equals_numpy_from_the_saved_weights(grouped_run, tiny_mnist):
    run, cfg = grouped_run
    arrays, validation = run.weights("with_bn"), tiny_mnist.validation
    loss, accuracy = numpy_in_batches(arrays, validation.images, validation.labels, 30, group_size=5)
    metrics = run.metrics
    final = [
        i
        for i, (v, s, step) in enumerate(zip(metrics["variant"], metrics["split"], metrics["step"]))
        if v == "with_bn" and s == schema.BATCH_STATS and step == 40
    ]
    assert len(final) == 1
    assert metrics["loss"][final[0]] == pytest.approx(loss, rel=1e-4)
    assert abs(metrics["accuracy"][final[0]] - accuracy) <= 1 / 180  # 200 images: 180 in batches of 30
    splits = {(v, s) for v, s in zip(metrics["variant"], metrics["split"])}
    assert ("without_bn", schema.BATCH_STATS) not in splits  # no batch statistics: no such evaluation
    steps = [st for v, s, st in zip(metrics["variant"], metrics["split"], metrics["step"]) if s == schema.BATCH_STATS]
    assert steps == [0, 20, 40]
    late = run.summary["variants"]["with_bn"]["batch_stats"]
    assert late["final_val_accuracy"] == metrics["accuracy"][final[0]]


@pytest.mark.slow
def test_the_batch_size_curve_equals_numpy_and_says_where_batch_statistics_suffice(grouped_run, tiny_mnist):
    run, _ = grouped_run
    curve = run.summary["variants"]["with_bn"]["batch_size_curve"]
    assert curve["sizes"] == [1, 2, 4, 8, 16, 30] and curve["group_size"] == 5
    # Each size on its whole batches of the 100 test images, both modes on the same ones (issue 33:
    # training mode on 90 images was compared with inference on all 100).
    assert curve["images"] == [100, 100, 100, 96, 96, 90]
    arrays, test = run.weights("with_bn"), tiny_mnist.test
    for size, count, training, inference in zip(
        curve["sizes"], curve["images"], curve["training_mode"], curve["inference_mode"]
    ):  # in training mode each batch is one group, whatever the arm's
        expected = numpy_in_batches(arrays, test.images, test.labels, size)[1]
        assert abs(training - expected) <= 1 / count, size
        logits = numpy_mlp(arrays, test.images[:count], "relu", statistics="population")[0]
        assert abs(inference - numpy_loss_and_accuracy(logits, test.labels[:count])[1]) <= 1 / count, size
    assert curve["good_from"] == summary.good_from(curve)
    assert "without_bn" in run.summary["variants"] and "batch_size_curve" not in run.summary["variants"]["without_bn"]


def test_good_from_is_the_smallest_size_from_which_every_larger_one_is_close():
    curve = {"sizes": [1, 2, 4, 8], "training_mode": [0.1, 0.95, 0.93, 0.975], "inference_mode": [0.98] * 4}
    assert summary.good_from(curve) == 8  # 4 is 0.05 below: 2 does not count
    assert summary.good_from({**curve, "training_mode": [0.1, 0.975, 0.971, 0.99]}) == 2
    assert summary.good_from({**curve, "training_mode": [0.1, 0.5, 0.6, 0.9]}) is None
    # Each size against inference on its own images; no accuracy (logits not numbers) is never close.
    assert summary.good_from({**curve, "inference_mode": [0.98, 0.98, 0.935, 0.98]}) == 4  # 4 is close to its own
    assert summary.good_from({**curve, "training_mode": [0.1, 0.975, 0.971, None]}) is None
    assert evaluation.curve_sizes(60) == [1, 2, 4, 8, 16, 32, 60] and evaluation.curve_sizes(64) == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
    ]


@pytest.mark.slow
def test_the_batch_size_figure_draws_the_summarys_curve(grouped_run):
    from bn_lab.report import plots

    run, _ = grouped_run
    assert (run.path / "batch_size_curve.png").is_file()
    curve = run.summary["variants"]["with_bn"]["batch_size_curve"]
    figure = plots.batch_size_curve_figure({"with_bn": curve}, "t")
    training, inference = figure.axes[0].lines[:2]
    assert list(training.get_xdata()) == curve["sizes"] and list(training.get_ydata()) == curve["training_mode"]
    assert list(inference.get_xdata()) == curve["sizes"] and list(inference.get_ydata()) == curve["inference_mode"]
    assert training.get_label() == "with BN, training mode (trained in groups of 5)"


@pytest.mark.slow
def test_the_batch_statistics_checks_never_change_training(tiny_mnist):
    runs = {}
    for enabled in (True, False):
        cfg = tiny_mlp_config(**{"batch_stats.enabled": enabled, "bn.group_size": 5})
        trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg))
        result = trainer.run()
        runs[enabled] = (result, [snapshot(n) for n in trainer.networks.values()])
    (on, nets_on), (off, nets_off) = runs[True], runs[False]
    kept = [(e.variant, e.step, e.split, e.loss, e.accuracy) for e in on.evaluations if e.split != schema.BATCH_STATS]
    assert kept == [(e.variant, e.step, e.split, e.loss, e.accuracy) for e in off.evaluations]
    assert all(np.array_equal(a, b) for net_a, net_b in zip(nets_on, nets_off) for a, b in zip(net_a, net_b))
    assert any(e.split == schema.BATCH_STATS for e in on.evaluations)


@pytest.mark.slow
def test_a_whole_group_is_the_whole_batch_bit_for_bit(tmp_path):
    """group_size equal to the batch's takes the code path of no groups: the same numbers, byte for byte."""
    out = {}
    for g in (0, 30):
        cfg = tiny_mlp_config(**{"bn.group_size": g})
        out[g] = api.load(launch.run_config(cfg, out=tmp_path / f"g{g}", progress="none"))
    assert (out[0].path / "metrics.csv").read_bytes() == (out[30].path / "metrics.csv").read_bytes()


@pytest.mark.slow
def test_the_cli_prints_the_batch_rows(tmp_path):
    done = bnlab(
        "run",
        CONFIGS / "smoke.yaml",
        "--set",
        "train.steps=20",
        "--set",
        "train.eval_every=10",
        "--set",
        "bn.group_size=4",
        "--out",
        tmp_path / "run",
    )
    assert done.returncode == 0, done.stderr
    lines = {line[:38].strip(): line[38:].split() for line in done.stdout.splitlines()}
    s = json.loads((tmp_path / "run" / "summary.json").read_text())["variants"]["with_bn"]
    assert lines["batch statistics: final"] == ["n/a", f"{s['batch_stats']['final_val_accuracy']:.4f}"]
    good = s["batch_size_curve"]["good_from"]
    assert lines["training mode ≈ inference from batch"] == [
        "n/a",
        *(["never"] if good is None else [str(good), "images" if good > 1 else "image"]),
    ]


# noisy_bn without its noise: XLA's stateless generator draws other numbers than TensorFlow's
# kernels from the same seed (each path is reproducible on its own).
GROUPED = {
    "batch_norm": {},
    "noisy_bn": {"n_mu": 0.0, "n_sigma": 1.0, "r_mu": 0.0, "r_sigma": 0.0},
    "batch_renorm": {"relax_from": 5, "relax_to": 20},
}


@pytest.mark.slow
@pytest.mark.parametrize("normalizer", list(GROUPED))
def test_groups_train_inside_xla_as_outside(normalizer, tiny_mnist):
    """The MLP's training loop is XLA-compiled, where every shape must be a constant: groups there
    train the same network as outside it (float rounding aside: sigmoid, whose smooth gradients do
    not amplify it as relu's kink does, see tests/test_fast_path.py)."""
    networks = {}
    for jit in (True, False):
        cfg = tiny_mlp_config(
            arms=[{"name": "g", "normalizer": normalizer, "options": {"group_size": 5, **GROUPED[normalizer]}}],
            **{"train.jit_compile": jit, "model.activation": "sigmoid"},
        )
        trainer = train.Trainer(cfg, tiny_mnist, initial_weights(cfg))
        trainer.run()
        networks[jit] = snapshot(trainer.networks["g"])
    for a, b in zip(networks[True], networks[False]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_sweep_axis_over_the_bn_section_reaches_the_arms_options(tmp_path):
    """An arm's options default to the bn section's: a grid over bn.group_size (and a sweep's `set:`)
    sets them, as --set does on one run, unless the arm gives the option itself."""
    from bn_lab.sweeps import spec

    (tmp_path / "arms.yaml").write_text(
        "train: {batch_size: 60}\n"
        "arms:\n"
        "  - {name: bn, normalizer: batch_norm}\n"
        "  - {name: brn, normalizer: batch_renorm}\n"
        "  - {name: fixed, normalizer: batch_norm, options: {group_size: 30}}\n"
    )
    (tmp_path / "sweep.yaml").write_text(
        "name: g\nbase: arms.yaml\nset: {bn.momentum: 0.9}\ngrid:\n  bn.group_size: {whole: 0, g4: 4}\nseeds: [0]\n"
    )
    sweep = spec.load(tmp_path / "sweep.yaml")
    found = {c.name: {a["name"]: a["options"] for a in c.config["arms"]} for c in sweep.cells}
    assert {name: [o["group_size"] for o in arms.values()] for name, arms in found.items()} == {
        "wholebn_seed0": [0, 0, 30],
        "g4bn_seed0": [4, 4, 30],
    }
    assert {o["momentum"] for arms in found.values() for o in arms.values()} == {0.9}
