"""What a user writes and bn_lab shows (labels, descriptions, sweep values): drawn as plain text,
one bounded line on a terminal, and a figure that fails costs nothing else (issue 33)."""

import io
import json
import shutil

import pytest

from bn_lab.report import plots, printed
from bn_lab.report import sweep_report as report
from bn_lab.store import rundir, schema
from bn_lab.training import launch
from tests.conftest import CONFIGS, bnlab, tiny_mlp_config

SMOKE = CONFIGS / "smoke.yaml"
ROWS = [
    {"variant": v, "step": s, "split": schema.VALIDATION, "accuracy": a}
    for v in ("without_bn", "with_bn")
    for s, a in ((0, 0.1), (10, 0.5))
]
MATH = {"without_bn": r"$\foo$", "with_bn": "50$ and 60$"}  # not math: matplotlib's math mode fails on the first


def styles(labels: dict) -> dict:
    return {name: {"label": label, "color": color} for (name, label), color in zip(labels.items(), ("red", "blue"))}


def test_labels_and_titles_are_drawn_as_the_text_they_are():
    from matplotlib.figure import Figure

    plain = Figure()
    plain.subplots().plot([0, 1], label=MATH["without_bn"])
    plain.legend()
    with pytest.raises(ValueError):  # what happened after training before
        plain.savefig(io.BytesIO(), format="png")
    figure = plots.accuracy_figure(ROWS, "title: 50$ and 60$ and $\\frac", styles=styles(MATH))
    figure.savefig(io.BytesIO(), format="png")
    texts = [t.get_text() for t in figure.axes[0].get_legend().texts]
    assert set(MATH.values()) <= set(texts)
    assert figure.axes[0].get_title() == "title: 50$ and 60$ and $\\frac"


def test_a_title_is_two_lines_at_most_cut_to_its_limit_whatever_the_description():
    config = tiny_mlp_config(description="x" * 150_000)  # no space to cut at
    first, second = printed.title(config).split("\n")
    assert first == "mlp: " + "x" * 85 and second == "x" * 88 + " …"
    config = tiny_mlp_config(description="first line\nsecond\x1b[2J line\u2028third")
    assert printed.title(config) == "mlp: first line second [2J line third"
    # A description of two lines' length is whole, broken at a word.
    words = "the paper's Fig. 1 setup, sigmoid 3x100, plain SGD at lr 0.1 where the network without BN converges"
    shown = printed.title(tiny_mlp_config(description=words + " later than with BN"))
    assert shown.replace("\n", " ") == "mlp: " + words + " later than with BN" and shown.count("\n") == 1
    assert all(len(line) <= 90 for line in shown.split("\n"))


@pytest.mark.slow
def test_a_figure_that_fails_costs_the_run_nothing(tmp_path, monkeypatch, recwarn):
    def fails(*args, **kwargs):
        raise ValueError("drawing failed\nsecond line")

    # No figure fails on what the config accepts any more; one that did is stood in for here.
    monkeypatch.setattr(plots, "batch_size_curve_figure", fails)
    out = tmp_path / "run"
    launch.run_config(tiny_mlp_config(), out=out, progress="none")
    assert rundir.is_complete(out) and not (out / rundir.BATCH_SIZE_PLOT).exists()
    assert (out / rundir.ACCURACY_PLOT).is_file()
    (warning,) = [str(w.message) for w in recwarn if "not drawn" in str(w.message)]
    assert warning == "batch_size_curve.png was not drawn (ValueError: drawing failed); everything else is kept"
    assert rundir.BATCH_SIZE_PLOT not in printed.report_text(rundir.load_summary(out), out)


@pytest.mark.slow
def test_a_report_whose_figures_fail_is_still_written(smoke_sweep, tmp_path):
    sweep = tmp_path / "smoke_grid"
    shutil.copytree(smoke_sweep[0], sweep)
    for summary_path in sweep.glob("*/summary.json"):  # a color edited in by hand: what matplotlib cannot draw
        summary = json.loads(summary_path.read_text())
        summary["arms"][0]["color"] = "notacolor"
        summary_path.write_text(json.dumps(summary))
    done = bnlab("report", sweep)
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("warning: curves.png was not drawn (ValueError: 'notacolor' is not a valid value for color")
    assert line.endswith("); everything else is kept")
    assert done.stdout.splitlines()[-2].endswith(f"({rundir.SUMMARY_CSV}, {rundir.HEATMAP})")
    assert not (sweep / rundir.CURVES).exists()  # the earlier report's, which described other colors, is gone
    assert (
        "Figures: `heatmap.png` (per grid point, each arm's late validation accuracy"
        in (sweep / rundir.REPORT).read_text()
    )
    assert "`curves.png`" not in (sweep / rundir.REPORT).read_text()


ESCAPE = "\x1b]0;PWNED\x07"


@pytest.mark.slow
def test_a_sweep_value_reaches_the_terminal_escaped(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        json.dumps(
            {
                "name": "escapes",
                "base": str(SMOKE),
                "grid": {"data.idx_dir": {"a": ESCAPE, "b": "x" * 500}},
            }
        )
    )
    done = bnlab("sweep", sweep_file, "--dry-run", "--results", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "data.idx_dir=a (\\x1b]0;PWNED\\x07)" in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) < 200


@pytest.mark.slow
def test_report_lines_stay_bounded_with_thousands_of_seeds(tmp_path):
    seeds = list(range(0, 6000, 2))  # no run of consecutive seeds to shorten
    assert report.seeds_text(list(range(10_000))) == "0-9999"
    assert report.seeds_text([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    text = report.seeds_text(seeds)
    assert len(text) < 140 and text.endswith(", … (3,000 seeds)")
    # One real cell, copied in the manifest to thousands: the report is what is tested (the
    # cell trains in this process: the command's own process is not).
    from bn_lab import api

    api.run(
        SMOKE, seeds=[0], out=tmp_path / "s", progress="none", overrides={"train.steps": 20, "train.eval_every": 10}
    )
    manifest = json.loads((tmp_path / "s" / "sweep.json").read_text())
    cell = manifest["cells"][0]
    manifest["seeds"] = seeds
    manifest["cells"] = [{**cell, "name": f"seed{s}", "seed": s} for s in seeds]
    (tmp_path / "s" / "sweep.json").write_text(json.dumps(manifest))
    shown = report.write_report(tmp_path / "s")
    for text in (shown, (tmp_path / "s" / rundir.REPORT).read_text()):
        assert max(len(line) for line in text.splitlines()) < 1000
    assert "Missing: 2,999 cells not run or not finished: seed2, seed4, seed6, " in shown
    assert ", seed20 and 2,989 more" in shown
    # Failed cells are listed one a line with their errors: the first ten, the others counted.
    failures = {f"seed{s}": {"error": f"ValueError: {s}", "traceback": "..."} for s in seeds[1:]}
    (tmp_path / "s" / rundir.FAILURES).write_text(json.dumps(failures))
    shown = report.write_report(tmp_path / "s")
    listed = [line for line in shown.splitlines() if line.startswith("- seed")]
    assert listed[:2] == ["- seed2: ValueError: 2", "- seed4: ValueError: 4"] and len(listed) == 10
    assert "- and 2,989 more cells (every one in failed.json)" in shown
    assert len(shown.splitlines()) < 40
