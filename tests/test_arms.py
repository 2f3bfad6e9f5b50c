"""Arms as config data: a config's `arms:` is checked with one line per mistake; any number of arms
start from the same initial weights, see the same batches, and each is asked what it has."""

import csv

import numpy as np
import pytest
import tensorflow as tf

from bn_lab.config import arms
from bn_lab.config import loading as config
from bn_lab.config.yaml_io import ConfigError, dump, parse_yaml, read_yaml
from bn_lab.probes import diagnostics
from bn_lab.report import inside_figures, printed
from bn_lab.store import schema
from bn_lab.training import experiment, train
from tests.conftest import CONFIGS, bnlab, initial_weights, snapshot, tiny_mlp_config
from tests.test_cli import one_error_line

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors

FOUR = read_yaml(CONFIGS / "backends_side_by_side.yaml")["arms"]
BN_ARMS = [a["name"] for a in FOUR if a["normalizer"]]


def with_arms(given, **dotted):
    base = config.apply_overrides({"model": {"name": "mlp", "hidden_units": [12, 12]}}, dotted)
    return config.validate({**base, "arms": given})


@pytest.mark.parametrize(
    "given, expected",
    [
        ([], "config: arms must be a non-empty list of arms"),
        ({"name": "a"}, "config: arms must be a non-empty list of arms"),
        ([{"name": "a", "colour": "red"}], "arms[0]: unknown key 'colour'; an arm's keys are name, normalizer"),
        ([{"normalizer": None}], "arms[0]: name is required, a string, got None"),
        ([{"name": 1e5}], "arms[0]: name must be a string; YAML read it as the number 100000.0: put it in quotes"),
        ([{"name": "a/b"}], "arms[0]: name "),
        ([{"name": "a"}, {"name": "a"}], "arms[1] (a): two arms are named 'a'"),
        (
            [{"name": "a", "normalizer": "weight_norm"}],
            "arms[0] (a): normalizer: unknown value 'weight_norm'; allowed: null, batch_norm",
        ),
        (
            [{"name": "a", "normalizer": "batch_norm", "options": {"groups": 2}}],
            "batch_norm has no option 'groups'; its options: backend, momentum, epsilon",
        ),
        (
            [{"name": "a", "normalizer": "batch_norm", "options": {"backend": "cudnn"}}],
            "backend: unknown value 'cudnn'; allowed: keras, tf_nn, manual",
        ),
        (
            [{"name": "a", "normalizer": "batch_norm", "options": {"momentum": "high"}}],
            "momentum must be float, got 'high'",
        ),
        (
            [{"name": "a", "normalizer": "batch_norm", "options": {"momentum": 1.5}}],
            "batch_norm: momentum must be strictly between 0 and 1",
        ),
        ([{"name": "a", "options": {"momentum": 0.9}}], "arms[0] (a): options are given but the arm has no normalizer"),
        (
            [{"name": "a", "normalizer": "group_norm", "options": {"groups": 5}}],
            "group_norm: 12 channels do not split into 5 groups",
        ),
        ([{"name": "a", "normalizer": "group_norm", "options": {"groups": 2.0}}], "groups must be int, got 2.0"),
        (
            [{"name": "a", "normalizer": "noisy_bn", "options": {"scale": 0.5}}],
            "noisy_bn: needs shift >= 0, scale >= 1",
        ),
        ([{"name": "a", "normalizer": "batch_renorm", "options": {"r_max": 0.5}}], "batch_renorm: "),
        ([{"name": "a", "placement": "inside"}], "placement: unknown value 'inside'; allowed: before_activation"),
        ([{"name": "a", "label": ""}], "arms[0] (a): label must be a non-empty string"),
        # What figures, tables and progress lines show is checked with the config (issue 33).
        ([{"name": "a", "color": "notacolor"}], "arms[0] (a): color must be a matplotlib color: a name (tab:blue"),
        (
            [{"name": "a", "short": "\x1b[31mred"}],
            "arms[0] (a): short must be one line of printable text (it holds '\\x1b')",
        ),
        ([{"name": "a", "label": "two\nlines"}], "label must be one line of printable text (it holds '\\n')"),
        ([{"name": "a", "label": "back\rwards"}], "label must be one line of printable text (it holds '\\r')"),
        ([{"name": "a", "label": "x" * 150_000}], "label must be at most 200 characters long (it has 150,000)"),
        ([{"name": "a", "short": "s" * 25}], "short must be at most 24 characters long (it has 25)"),
        ([{"name": "a", "label": "caf\udce9"}], "label must be one line of printable text (it holds '\\udce9')"),
        (
            [{"name": "a", "normalizer": "batch_norm", "options": 0}],
            "options must be a mapping of option to value, got 0",
        ),
        ([{"name": "a", "normalizer": "batch_norm", "options": None}], "options must be a mapping of option to value"),
        ([{"name": "a", "label": "BN"}, {"name": "b", "label": "BN"}], "arms[1] (b): label 'BN' is also arms[0]'s"),
        ([{"name": "a" * 30}, {"name": "a" * 31}], "): short 'aaaaaaaaaaaaaaaaaaaaaaa…' is also arms[0]'s"),
        (
            [{"name": "a", "normalizer": "batch_renorm", "options": {"r_max": float("inf")}}],
            "r_max must be a finite number, got inf",
        ),
        ([{"name": f"a{k}"} for k in range(11)], "arms: at most 10 arms, got 11"),
    ],
)
def test_a_bad_arm_is_one_line_naming_it(given, expected):
    with pytest.raises(ConfigError) as error:
        with_arms(given)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_arms_null_is_an_error_not_the_lessons_pair():
    with pytest.raises(ConfigError, match=r"^config: arms must be a non-empty list of arms .*, got None$"):
        config.validate({"arms": None})


def test_a_default_short_name_is_the_arms_name_cut_to_fit_a_progress_line():
    long = "n" * 200
    (arm,) = arms.of(with_arms([{"name": long}]))
    assert arm.label == long and arm.short == "n" * 23 + "…"


@pytest.mark.slow
def test_a_bad_arm_from_the_command_line_is_one_line_before_training(tmp_path):
    path = tmp_path / "arms.yaml"
    path.write_text("arms:\n  - {name: plain}\n  - {name: ln, normalizer: layernorm}\n")
    line = one_error_line(bnlab("run", path, "--out", tmp_path / "x"))
    assert str(path) in line and "arms[1] (ln): normalizer: unknown value 'layernorm'" in line
    assert not (tmp_path / "x").exists()


def test_without_arms_a_config_compares_the_lessons_pair_as_before():
    default = config.validate({})
    assert "arms" not in default and "arms" not in dump(default)
    pair = arms.of(default)
    assert [a.name for a in pair] == ["without_bn", "with_bn"]
    assert [(a.normalizer, a.has_population_statistics, a.scale_invariance) for a in pair] == [
        (None, False, None),
        ("batch_norm", True, "column"),
    ]
    assert pair[1].options == {"backend": "keras", "momentum": 0.99, "epsilon": 0.001, "group_size": 0}
    spelled_out = with_arms(
        [{"name": "without_bn"}, {"name": "with_bn", "normalizer": "batch_norm"}], **{"model.hidden_units": [100] * 3}
    )
    assert [(a.name, a.normalizer, a.options, a.placement) for a in arms.of(spelled_out)] == [
        (a.name, a.normalizer, a.options, a.placement) for a in pair
    ]


def test_an_arms_options_default_to_the_bn_section_and_are_recorded_in_the_config():
    c = with_arms([{"name": "n", "normalizer": "noisy_bn", "options": {"shift": 1}}], **{"bn.momentum": 0.9})
    (arm,) = arms.of(c)
    assert arm.options == {
        "backend": "keras",
        "momentum": 0.9,
        "epsilon": 0.001,
        "group_size": 0,
        "noise": "algorithm1",
        "n_mu": 0.5,
        "n_sigma": 1.25,
        "r_mu": 0.1,
        "r_sigma": 0.1,
        "shift": 1.0,
        "scale": 1.5,
        "spread": 0.5,
    }
    assert config.validate(parse_yaml(dump(c)))["arms"] == c["arms"]  # what config.yaml holds runs again


def tiny_with_arms(given):
    """conftest's tiny MLP run with these arms."""
    return config.validate({**parse_yaml(dump(tiny_mlp_config())), "arms": given})


@pytest.mark.slow
def test_every_arm_starts_from_the_same_initial_weights_and_sees_the_same_batches(tiny_mnist):
    """Arms whose hidden layers have no bias (a normalizer before the activation) hold exactly the
    initial kernels; and two copies of one arm, trained side by side, stay bit-identical."""
    c = tiny_with_arms(
        [
            {"name": "plain"},
            {"name": "ln", "normalizer": "layer_norm"},
            {"name": "bn", "normalizer": "batch_norm", "options": {"backend": "manual"}},
            {"name": "bn_again", "normalizer": "batch_norm", "options": {"backend": "manual"}},
        ]
    )
    initial = initial_weights(c)
    trainer = train.Trainer(c, tiny_mnist, initial)
    assert list(trainer.networks) == ["plain", "ln", "bn", "bn_again"]
    for network in trainer.networks.values():
        assert all(np.array_equal(k.numpy(), w) for k, w in zip(network.kernels, initial))
    trainer.train_steps(20)
    bn, again = snapshot(trainer.networks["bn"]), snapshot(trainer.networks["bn_again"])
    assert all(np.array_equal(a, b) for a, b in zip(bn, again))
    assert not np.array_equal(snapshot(trainer.networks["ln"])[0], snapshot(trainer.networks["plain"])[0])


@pytest.fixture(scope="module")
def four_arms(tmp_path_factory, tiny_mnist):
    """backends_side_by_side, cut to 120 steps on the small splits, run as `bnlab run` runs it."""
    tree = config.apply_overrides(
        read_yaml(CONFIGS / "backends_side_by_side.yaml"),
        {
            "train.steps": 120,
            "train.eval_every": 40,
            "train.jit_compile": False,  # XLA per backend: test_fast_path; compiling four networks is most of the cost
            "train.single_samples": 20,
            "data": {"train_limit": 600, "val_limit": 200, "test_limit": 100},
            "diagnostics.probe_images": 64,
            "precise_bn.images": 300,
        },
    )
    run_dir = tmp_path_factory.mktemp("four")
    summary = experiment.run_experiment(config.validate(tree), run_dir, progress="none")
    return run_dir, summary


@pytest.mark.slow
def test_four_arms_run_and_every_file_shows_all_four(four_arms):
    run_dir, summary = four_arms
    names = [a["name"] for a in FOUR]
    assert [a["name"] for a in summary["arms"]] == names == list(summary["variants"])
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["variant"] for r in rows} == set(names)
    with open(run_dir / "diagnostics.csv") as f:
        assert {r["variant"] for r in csv.DictReader(f)} == set(names)
    text = printed.report_text(summary, run_dir)
    header = next(line for line in text.splitlines() if "without bn" in line)
    assert all(n.replace("_", " ") in header for n in names)
    from matplotlib import colors, image

    # Each arm is drawn in its color: diagnostics.png a column each, accuracy.png a line each (the
    # three backends' curves coincide and cover one another: their legend's samples still show).
    for png in ("accuracy.png", "diagnostics.png"):
        pixels = image.imread(run_dir / png)[..., :3].reshape(-1, 3)
        for arm in summary["arms"]:
            rgb = colors.to_rgb(arm["color"])
            assert (abs(pixels - rgb).max(axis=1) < 0.02).sum() > 20, (png, arm["name"], arm["color"])
    # The plain arm has no population statistics: its rows read n/a, never a number.
    training_mode = next(line for line in text.splitlines() if line.startswith("single images, training mode"))
    assert training_mode.split()[4] == "n/a" and summary["variants"]["without_bn"]["single_sample"]["training"] is None
    assert "precise_bn" not in summary["variants"]["without_bn"]
    assert all("precise_bn" in summary["variants"][n] for n in BN_ARMS)


@pytest.mark.slow
def test_the_three_bn_backends_agree_to_the_printed_precision(four_arms):
    run_dir, summary = four_arms
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == schema.VALIDATION]
    by_arm = {n: [float(r["accuracy"]) for r in rows if r["variant"] == n] for n in BN_ARMS}
    first = by_arm[BN_ARMS[0]]
    assert len(first) == 4 and all(np.allclose(first, other, atol=5e-5) for other in by_arm.values())
    printed_figures = {n: f"{summary['variants'][n]['final_val_accuracy']:.4f}" for n in BN_ARMS}
    assert len(set(printed_figures.values())) == 1, printed_figures


@pytest.mark.slow
def test_the_diagnostics_figure_has_a_column_per_arm(four_arms):
    run_dir, summary = four_arms
    with open(run_dir / "diagnostics.csv") as f:
        rows = [{**r, "step": int(r["step"]), "value": float(r["value"])} for r in csv.DictReader(f)]
    rows = [{**r, "layer": r["layer"] if r["layer"] == "all" else int(r["layer"])} for r in rows]
    styles = arms.recorded(summary)
    figure = inside_figures.diagnostics_figure(rows, 3, "four arms", 0, styles=styles)
    titles = [ax.get_title() for ax in figure.axes]
    for arm in styles.values():
        assert any(t.startswith(arm["label"] + ":") for t in titles), arm["label"]
    effective = [t for t in titles if "effective learning rate" in t]
    assert sorted(t.split(":")[0] for t in effective) == sorted(styles[n]["label"] for n in BN_ARMS)


@pytest.mark.slow
def test_exact_statistics_and_the_training_mode_check_do_not_apply_to_layer_norm(tiny_mnist, tmp_path):
    c = tiny_with_arms(
        [
            {"name": "with_bn", "normalizer": "batch_norm"},
            {"name": "ln", "normalizer": "layer_norm", "label": "LayerNorm"},
        ]
    )
    summary = experiment.run_experiment(c, tmp_path, progress="none")
    ln = summary["variants"]["ln"]
    assert "precise_bn" not in ln and ln["single_sample"]["training"] is None
    assert ln["single_sample"]["inference"] is not None and "precise_bn" in summary["variants"]["with_bn"]
    with open(tmp_path / "metrics.csv") as f:
        splits = {(r["variant"], r["split"]) for r in csv.DictReader(f)}
    assert ("with_bn", schema.PRECISE_BN) in splits and ("ln", schema.PRECISE_BN) not in splits
    lines = printed.report_text(summary, tmp_path).splitlines()
    for label in printed.POPULATION_ROWS:
        (line,) = [x for x in lines if x.startswith(label)]
        assert line.split()[-1] == "n/a" and line.split()[-2] != "n/a"


@pytest.mark.parametrize(
    "invariance, groups, expected",
    [
        ("column", 1, lambda w: np.linalg.norm(w, axis=0)),
        ("matrix", 1, lambda w: [np.linalg.norm(w)]),
        ("group", 3, lambda w: [np.linalg.norm(w[:, 2 * g : 2 * g + 2]) for g in range(3)]),
    ],
)
def test_the_norm_an_effective_learning_rate_divides_by_is_the_declared_one(invariance, groups, expected):
    """A conv kernel (3x3, 4 channels in, 6 out): per column, the Frobenius norm, per group of 2 columns."""
    kernel = np.random.default_rng(0).normal(0, 2, (3, 3, 4, 6)).astype(np.float32)
    got = diagnostics.invariant_norms(tf.constant(kernel), invariance, groups).numpy()
    np.testing.assert_allclose(got, expected(kernel.reshape(-1, 6)), rtol=1e-5)


@pytest.mark.slow
def test_a_sweep_report_over_four_arms_shows_all_four(tmp_path):
    """backends_side_by_side over a grid of two learning rates, one seed each, tiny: report.md has a
    column per arm and an uplift per arm over the first, summary.csv every arm's figures."""
    from bn_lab import api

    grid = api.sweep(
        CONFIGS / "backends_side_by_side.yaml",
        ["optimizer.learning_rate=0.5,1"],
        seeds=[0],
        results=tmp_path,
        progress="none",
        executor="inprocess",  # the report is what is tested: a process per cell would be its cost
        overrides={
            "train.steps": 40,
            "train.eval_every": 20,
            "train.jit_compile": False,
            "train.single_samples": 20,
            "data": {"train_limit": 600, "val_limit": 200, "test_limit": 100},
            "precise_bn.images": 300,
            "diagnostics.enabled": False,
        },
    )
    report_md = (grid.path / "report.md").read_text()
    header = next(line for line in report_md.splitlines() if line.startswith("| optimizer.learning_rate"))
    for arm in FOUR:
        assert f"late val acc {arm['label']} |" in header, arm["label"]
        has_population = arm["normalizer"] is not None
        assert (f"late val acc {arm['label']}, exact stats |" in header) == has_population, arm["label"]
    for arm in FOUR[1:]:
        assert f"{arm['short']} uplift" in header
    with open(grid.path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        finals = [float(row[f"{name}/final_val_accuracy"]) for name in BN_ARMS]
        assert float(row["without_bn/final_val_accuracy"]) >= 0 and max(finals) - min(finals) < 1e-4, row["cell"]


@pytest.mark.slow
def test_every_name_the_check_allows_trains_and_has_columns_of_its_own(tmp_path):
    """Names that crashed TensorFlow (`no-bn` is no Python identifier) or whose summary.csv columns
    collided (`x` and `x_precise_bn` both wrote `x_precise_bn_final_val_accuracy`) (issue 33)."""
    from bn_lab import api

    given = [
        {"name": "no-bn"},
        {"name": "x", "normalizer": "batch_norm"},
        {"name": "x_precise_bn", "normalizer": "batch_norm", "options": {"momentum": 0.5}},
        {"name": "x_batch_stats", "normalizer": "layer_norm"},
        {"name": "-.1e5", "normalizer": "batch_norm", "options": {"momentum": 0.9}},
    ]
    grid = api.run({**tiny_mlp_config(), "arms": given}, seeds=[0], out=tmp_path / "s", progress="none")
    with open(grid.path / "summary.csv", newline="") as f:
        header, values = list(csv.reader(f))
    assert len(header) == len(set(header))
    row = dict(zip(header, values))
    summary = grid.runs["seed0"].summary["variants"]
    for arm in given:
        for figure in ("final_val_accuracy", "test_accuracy"):
            assert row[f"{arm['name']}/{figure}"] == str(summary[arm["name"]][figure]), (arm, figure)
    assert row["x/precise_bn_final_val_accuracy"] == str(summary["x"]["precise_bn"]["final_val_accuracy"])
    assert row["x_precise_bn/final_val_accuracy"] == str(summary["x_precise_bn"]["final_val_accuracy"])


@pytest.mark.parametrize(
    "axis",
    [
        "--grid",  # a list of arm lists
        "file",  # named values
    ],
)
def test_arms_are_refused_as_a_grid_axis_before_anything_runs(tmp_path, axis):
    from bn_lab.sweeps import spec

    if axis == "--grid":
        with pytest.raises(spec.SweepError) as error:
            spec.load(CONFIGS / "smoke.yaml", ["arms=[{name: a}],[{name: b}]"])
        where = "--grid"
    else:
        sweep_file = tmp_path / "sweep.yaml"
        sweep_file.write_text(
            f"base: {CONFIGS / 'smoke.yaml'}\ngrid:\n  arms: {{pair: [{{name: a}}, {{name: b}}], one: [{{name: a}}]}}\n"
        )
        with pytest.raises(spec.SweepError) as error:
            spec.load(sweep_file)
        where = f"{sweep_file}: grid"
    assert str(error.value) == (
        f"{where}: arms cannot be a grid axis (every cell of a sweep compares the same arms); list them once "
        "under `set:` or in the base config, and sweep what they share (their options default to the bn section's)"
    )
