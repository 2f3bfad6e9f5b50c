"""Each figure a student sees, rendered and read back: its axis labels, tick names as the report
names the values, legend entries, markers at the real step, a legend off the curves, titles whole."""

import json
import shutil

import pytest

from bn_lab.report.sweep_results import collect

pytestmark = pytest.mark.slow


@pytest.fixture
def drawn_figures(monkeypatch):
    """{file name: the matplotlib Figure} of every figure drawn while the test runs (still written)."""
    from bn_lab.disk import files

    found, save = {}, files.save_figure

    def watched(path, figure, **options):
        figure.canvas.draw()  # texts laid out, as in the PNG
        found[path.name if hasattr(path, "name") else str(path)] = figure
        save(path, figure, **options)

    monkeypatch.setattr(files, "save_figure", watched)
    return found


def texts(ax) -> dict:
    return {
        "title": ax.get_title(),
        "xlabel": ax.get_xlabel(),
        "ylabel": ax.get_ylabel(),
        "xticks": [t.get_text() for t in ax.get_xticklabels()],
        "yticks": [t.get_text() for t in ax.get_yticklabels()],
    }


def test_the_sweep_figures_name_their_axes_and_values_as_the_report_does(smoke_sweep, tmp_path, drawn_figures):
    from bn_lab.report import sweep_figures

    copy = tmp_path / "smoke_grid"
    shutil.copytree(smoke_sweep[0], copy)
    results = collect(copy)
    assert sweep_figures.heatmap(results, copy / "heatmap.png") and sweep_figures.curves(results, copy / "curves.png")
    heatmap = drawn_figures["heatmap.png"]
    first, second = (texts(ax) for ax in heatmap.axes[:2])
    assert (first["ylabel"], first["yticks"]) == ("model.activation", ["relu", "sigmoid"])
    assert (first["xlabel"], first["xticks"]) == ("init.scale", ["good (0.05)", "bad (5)"])  # as report.md's rows
    assert (first["title"], second["title"]) == ("without BN", "with BN") and not any(second["yticks"])
    curves = drawn_figures["curves.png"]
    titles = [ax.get_title() for ax in curves.axes if ax.get_visible() and ax.get_title()]
    assert titles == ["relu, good (0.05)", "relu, bad (5)", "sigmoid, good (0.05)", "sigmoid, bad (5)"]
    # Each diverged network's x sits at the step it diverged at, not at its last evaluation.
    diverged = sorted(
        json.loads((copy / f"relu_badinit_seed{seed}" / "summary.json").read_text())["variants"]["without_bn"][
            "diverged_at_step"
        ]
        for seed in (0, 1)
    )
    panel = next(ax for ax in curves.axes if ax.get_title() == "relu, bad (5)")
    crosses = sorted(line.get_xdata()[0] for line in panel.lines if line.get_marker() == "x")
    assert crosses == diverged and min(diverged) > 0


def test_a_runs_figures_label_their_axes_and_keep_the_legend_off_the_curves(tmp_path, drawn_figures):
    from bn_lab.config import loading as config
    from bn_lab.training import launch
    from tests.conftest import CONFIGS

    c = config.load(
        CONFIGS / "paper_fig1.yaml",
        {"train.steps": 40, "train.eval_every": 20, "data.train_limit": 600, "data.val_limit": 200, "data.test_limit": 200,
         "train.single_samples": 20, "precise_bn.images": 300, "diagnostics.probe_images": 64, "train.test_every": 20},
    )  # fmt: skip
    launch.run_config(c, out=tmp_path / "run", progress="none")
    accuracy = drawn_figures["accuracy.png"]
    (ax,) = accuracy.axes
    legend = ax.get_legend()
    entries = [t.get_text() for t in legend.get_texts()]
    assert (
        entries[:2] == ["without BN", "without BN, training steps"]
        and "with BN, exact population statistics" in entries
    )
    renderer = accuracy._get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1  # beside, not on, the curves
    assert (ax.get_xlabel(), ax.get_ylim()) == ("training step (batches)", (0.0, 1.0))
    paper = drawn_figures["paper_fig1.png"]
    a, b, c_ = paper.axes[:3]
    assert (a.get_title(), a.get_ylabel()) == ("(a) test accuracy", "test accuracy")
    # (a): a marker at each test evaluation (one point, without test_every, is still seen), over
    # the bands' steps, from 0.6 (the paper's) or 0 if a network is below it.
    import csv

    with open(tmp_path / "run" / "metrics.csv") as f:
        tested = [float(r["accuracy"]) for r in csv.DictReader(f) if r["split"] == "test"]
    assert all(line.get_marker() == "o" for line in a.lines) and len(a.lines) == 2
    assert a.get_xlim() == b.get_xlim() and a.get_ylim() == (0.6 if min(tested) >= 0.6 else 0.0, 1.0)
    for panel, letter, arm in ((b, "b", "without BN"), (c_, "c", "with BN")):
        assert panel.get_title().startswith(f"({letter}) {arm}: layer 3, unit 0") and panel.get_ylabel()
        assert [t.get_text() for t in panel.get_legend().get_texts()] == ["15th-85th percentile", "median"]
    title = paper._suptitle.get_text()
    assert title.count("\n") <= 1 and all(len(line) <= 90 for line in title.split("\n"))
    curve = drawn_figures["batch_size_curve.png"].axes[0]
    assert curve.get_xscale() == "log" and curve.get_xlabel() == "evaluation batch size"
    assert [t.get_text() for t in curve.get_xticklabels()][-1] == "60"  # the training batch, at its place
    # A log axis's tick labels are matplotlib's math ("10²", not "$\\mathdefault{10^{2}}$" as text);
    # titles and labels are plain text.
    diagnostics = drawn_figures["diagnostics.png"]
    logs = [ax for ax in diagnostics.axes if ax.get_yscale() == "log"]
    assert logs and all(ax.get_title() and not ax.title.get_parse_math() for ax in logs)
    for ax in logs:
        labels = [t for t in ax.get_yticklabels() if t.get_text()]
        assert labels and all("mathdefault" in t.get_text() and t.get_parse_math() for t in labels)


def test_a_figures_text_is_drawn_as_written_and_its_log_ticks_as_math(tmp_path):
    from bn_lab.disk import files
    from bn_lab.report import plots

    figure = plots.new_figure()
    ax = figure.add_subplot()
    ax.plot([1, 2, 3], [1, 100, 10_000], label="$x$ and 5$")
    ax.set_yscale("log")
    ax.set_xticks([1, 3], ["$\\frac$", "$5"])  # a grid's values as the user wrote them
    ax.set_title("温度 🔥 $\\frac$ and $5")
    ax.legend()
    files.save_figure(tmp_path / "f.png", figure)  # `$\\frac$` as math would raise here
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
    ours = [ax.title, *ax.get_legend().get_texts(), *ax.get_xticklabels()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["$\\frac$", "$5"]
    assert not any(t.get_parse_math() for t in ours)
    ticks = [t for t in ax.get_yticklabels() if t.get_text()]
    assert ticks and all(t.get_text().startswith("$\\mathdefault{10^{") and t.get_parse_math() for t in ticks)


@pytest.mark.parametrize(
    "values, drawn",
    [
        ([[2, 2], [4, 4], [8, 8]], True),
        ([0.1, 1, 2], True),
        ([[2], ["x"], [3]], False),
        (["relu", "tanh", "elu"], False),
    ],
)
def test_a_grid_of_depths_is_drawn_against_the_blocks_in_all(values, drawn):
    from bn_lab.report import sweep_figures

    manifest = {"axes": [{"key": "model.blocks", "values": values, "labels": None}]}
    assert (sweep_figures.numeric_axis(manifest) == 0) == drawn
    if drawn:
        assert [sweep_figures._number(v) for v in values] == [sum(v) if isinstance(v, list) else v for v in values]


@pytest.mark.parametrize("measured_layers", [[2], [2, 3]])
def test_covariate_shift_by_layer_has_a_tick_at_each_layer_and_titles_apart(tmp_path, measured_layers):
    from bn_lab.disk import files
    from bn_lab.report import inside_figures

    layers = [{"layer": n, "ics_l2": 1.0, "ics_relative": 0.1 * n, "ics_cosine": 0.9} for n in [1, *measured_layers]]
    shifts = {arm: {"band_motion_relative": 0.5, "layers": layers} for arm in ("without_bn", "with_bn")}
    metrics = [{"variant": arm, "step": s, "split": "validation", "accuracy": 0.5} for arm in shifts for s in (0, 10)]
    figure = inside_figures.covariate_shift_figure(metrics, [], max(measured_layers), 0, "title", shifts)
    files.save_figure(tmp_path / "covariate_shift.png", figure)
    by_layer = figure.axes[-2:]
    renderer = figure._get_renderer()
    for ax in by_layer:
        assert list(ax.get_xticks()) == measured_layers  # layer 1 has nothing below it
    left, right = (ax.title.get_window_extent(renderer) for ax in by_layer)
    assert left.x1 < right.x0


@pytest.mark.parametrize("title", ["one line", "a title long enough to be printed on two lines:\nits second line"])
def test_diagnostics_key_sits_between_the_title_and_the_panels_whose_titles_stay_apart(tmp_path, title):
    """Four arms with long labels, a title of one or two lines (printed.title's most)."""
    from bn_lab.disk import files
    from bn_lab.report import inside_figures

    labels = ["plain (no normalization)", "BN on the branch", "SkipInit", "Fixup"]
    styles = {f"arm{i}": {"label": label, "color": f"C{i}"} for i, label in enumerate(labels)}
    quantities = ["unit_p15", "unit_p50", "unit_p85", "unit_mean_mean", "unit_mean_std", "kernel_norm"]
    rows = [
        {"variant": arm, "step": step, "layer": layer, "quantity": q, "value": 1.0 + step + layer}
        for arm in styles for step in (0, 10) for layer in (1, 2, 3) for q in quantities
    ]  # fmt: skip
    figure = inside_figures.diagnostics_figure(rows, 3, title, 0, styles=styles)
    files.save_figure(tmp_path / "diagnostics.png", figure, tight=False)
    renderer = figure._get_renderer()
    heading = figure._suptitle.get_window_extent(renderer)
    key = figure.legends[0].get_window_extent(renderer)
    panel_titles = [ax.title.get_window_extent(renderer) for ax in figure.axes]
    assert heading.y0 > key.y1 and key.y0 > max(t.y1 for t in panel_titles)
    rows_of_panels = {}
    for ax, extent in zip(figure.axes, panel_titles):
        rows_of_panels.setdefault(ax.get_subplotspec().rowspan.start, []).append(extent)
    assert len(rows_of_panels) > 1
    for in_row in rows_of_panels.values():
        in_row.sort(key=lambda t: t.x0)
        assert len(in_row) == 4 and all(a.x1 < b.x0 for a, b in zip(in_row, in_row[1:]))
