"""`bnlab report` on a real (tiny) sweep: aggregation over seeds, partial sweeps, bad input.

The expected numbers are computed here from the cells' summary.json files, independently
of bn_lab.report.sweep_report.
"""

import csv
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, bnlab

REPO = ROOT
LESSON = ("without_bn", "with_bn")
POINTS = ["relu_goodinit", "relu_badinit", "sigmoid_goodinit", "sigmoid_badinit"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke(smoke_sweep, tmp_path_factory):
    """A copy of the session's smoke sweep (8 cells, 2 seeds per grid point): these tests rewrite its report."""
    copy = tmp_path_factory.mktemp("report") / "smoke_grid"
    shutil.copytree(smoke_sweep[0], copy)
    return copy


def two_seed_interval(mean: float, half: float) -> str:
    """A two-seed accuracy uplift's interval as the report shows it: cut to [-1, 1] (a difference of
    accuracies), and marked as resting on two seeds."""
    low, high = max(mean - half, -1.0), min(mean + half, 1.0)
    clipped = "clipped, " if (low, high) != (mean - half, mean + half) else ""
    return f"{low:+.4f} to {high:+.4f} ({clipped}n=2)"


@pytest.mark.slow
def test_quiet_prints_nothing_and_a_finished_sweep_runs_no_cell(smoke):
    done = bnlab("sweep", REPO / "configs" / "sweep_smoke.yaml", "--results", smoke.parent, "--quiet", timeout=120)
    assert (done.returncode, done.stdout) == (0, "")
    assert (smoke / "report.md").read_text().count("8 of 8 cells finished") == 1


def table_rows(report_md: str) -> dict:
    """report.md's table as {grid point: {column: cell text}}."""
    lines = [line for line in report_md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        row = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        activation, init = row["model.activation"], row["init.scale"].split()[0]
        rows[f"{activation}_{init}init"] = row
    return rows


def figure(v: dict, which: str):
    """One network's accuracy as the report should aggregate it; None if it diverged."""
    if v["diverged"]:
        return None
    return v["late_val_accuracy"]["mean"] if which == "late" else v["final_val_accuracy"]


def mean_text(values: list[float], digits: str) -> str:
    if not values:
        return "—"
    text = f"{statistics.mean(values):{digits}}"
    return text + (f" ± {statistics.stdev(values):{digits}}" if len(values) > 1 else "")


def expected(sweep_dir: Path, point: str, threshold: float, which: str = "late") -> dict:
    summaries = [json.loads(path.read_text()) for path in sorted(sweep_dir.glob(f"{point}_seed*/summary.json"))]
    text = {}
    for variant, column in (("without_bn", "without BN"), ("with_bn", "with BN")):
        finished = [s["variants"][variant] for s in summaries]
        accuracies = [figure(v, which) for v in finished if not v["diverged"]]  # collapsed ones count
        diverged = len(finished) - len(accuracies)
        if not accuracies:
            text[f"{which} val acc {column}"] = f"diverged ({diverged}/{len(finished)})"
        else:
            value = f"{statistics.mean(accuracies):.4f}"
            if len(accuracies) > 1:
                value += f" ± {statistics.stdev(accuracies):.4f}"
            if diverged:
                value += f" ({diverged}/{len(finished)} diverged)"
            text[f"{which} val acc {column}"] = value
        text[f"success {column}"] = f"{sum(a >= threshold for a in accuracies)}/{len(finished)}"
        counts = {
            o: sum(v["outcome"] == o for v in finished) for o in ("learned", "near chance", "collapsed", "diverged")
        }
        text[f"outcomes {column}"] = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    paired = [
        figure(s["variants"]["with_bn"], which) - figure(s["variants"]["without_bn"], which)
        for s in summaries
        if not (s["variants"]["with_bn"]["diverged"] or s["variants"]["without_bn"]["diverged"])
    ]
    for variant, column in (("without_bn", "without BN"), ("with_bn", "with BN")):
        if "diagnostics" not in summaries[0]["variants"]["with_bn"]:
            break
        inside = [s["variants"][variant]["diagnostics"] for s in summaries if not s["variants"][variant]["diverged"]]
        inactive = [d.get("dead_fraction", d.get("saturated_fraction")) for d in inside]
        text[f"dead/saturated, last layer, {column}"] = mean_text(inactive, ".2f")
    if "diagnostics" in summaries[0]["variants"]["with_bn"]:
        effective = [
            s["variants"]["with_bn"]["diagnostics"]["effective_lr"]
            for s in summaries
            if not s["variants"]["with_bn"]["diverged"]
        ]
        text["BN effective lr, last layer"] = mean_text(effective, ".1e")
    if paired:
        text["BN uplift"] = f"{statistics.mean(paired):+.4f}" + (
            f" ± {statistics.stdev(paired):.4f}" if len(paired) > 1 else ""
        )
    else:
        text["BN uplift"] = "—"
    return text


def between_the_seeds(sweep_dir: Path, point: str, variant: str) -> float:
    """A threshold halfway between the two seeds' late accuracies of one network, read from the cells:
    exactly one seed reaches it on any CPU (the values themselves differ by CPU; the cell is chaotic)."""
    late = sorted(
        json.loads(path.read_text())["variants"][variant]["late_val_accuracy"]["mean"]
        for path in sweep_dir.glob(f"{point}_seed*/summary.json")
    )
    assert len(late) == 2 and late[0] < late[1], f"{point}: the two seeds' late accuracies must differ, got {late}"
    return round((late[0] + late[1]) / 2, 6)


@pytest.mark.slow
def test_aggregates_over_seeds_match_the_cells_summaries(smoke):
    threshold = between_the_seeds(smoke, "relu_goodinit", "with_bn")  # success 1/2 for relu with BN
    done = bnlab("report", smoke, "--threshold", threshold)
    assert done.returncode == 0, done.stderr
    report_md = (smoke / "report.md").read_text()
    rows = table_rows(report_md)
    assert list(rows) == POINTS
    for point in POINTS:
        for column, text in expected(smoke, point, threshold).items():
            assert rows[point][column] == text, (point, column)
        assert rows[point]["seeds"] == "2/2"
    # The numbers that make this sweep a useful check, pinned so a silent change shows up.
    assert rows["relu_badinit"]["late val acc without BN"] == "diverged (2/2)"
    assert rows["relu_badinit"]["outcomes without BN"] == "2 diverged"
    assert rows["relu_goodinit"]["outcomes without BN"] == "2 collapsed"  # plain relu at lr 2 dies
    assert rows["relu_badinit"]["BN uplift"] == "—"
    assert rows["relu_goodinit"]["success with BN"] == "1/2"
    assert f"reached {threshold:g}; a diverged network is a failure" in report_md
    assert "the lesson's TF1 code printed 0.1000 for it" in report_md  # class 0's share of these 500 images
    assert (
        "Inside the network" not in report_md and not (smoke / "mechanism.png").exists()
    )  # smoke.yaml: no diagnostics

    final = bnlab("report", smoke, "--threshold", threshold, "--figure", "final")
    assert final.returncode == 0, final.stderr
    rows = table_rows((smoke / "report.md").read_text())
    for point in POINTS:
        for column, text in expected(smoke, point, threshold, "final").items():
            assert rows[point][column] == text, (point, column)
    assert "| relu_goodinit" not in done.stdout and "| relu             | good (0.05)" in done.stdout


@pytest.mark.slow
def test_report_of_a_partial_sweep_names_the_missing_cells(smoke, tmp_path):
    partial = tmp_path / "smoke_grid"
    shutil.copytree(smoke, partial)
    for cell in ("relu_goodinit_seed1", "sigmoid_badinit_seed0", "sigmoid_badinit_seed1"):
        shutil.rmtree(partial / cell)
    (partial / "sigmoid_badinit_seed1").mkdir()  # a directory without summary.json is not a result
    for name in ("summary.csv", "report.md", "heatmap.png", "curves.png"):
        (partial / name).unlink()

    done = bnlab("report", partial)
    assert done.returncode == 0, done.stderr
    report_md = (partial / "report.md").read_text()
    assert "5 of 8 cells finished" in report_md
    missing = (
        "Missing: 3 cells not run or not finished: relu_goodinit_seed1, sigmoid_badinit_seed0, sigmoid_badinit_seed1"
    )
    assert missing in report_md and missing in done.stdout
    rows = table_rows(report_md)
    assert rows["sigmoid_badinit"]["seeds"] == "0/2"
    assert rows["sigmoid_badinit"]["late val acc with BN"] == "—" and rows["sigmoid_badinit"]["success with BN"] == "—"
    assert rows["relu_goodinit"]["seeds"] == "1/2"
    seed0 = json.loads((partial / "relu_goodinit_seed0" / "summary.json").read_text())["variants"]
    assert (
        rows["relu_goodinit"]["late val acc with BN"] == f"{seed0['with_bn']['late_val_accuracy']['mean']:.4f}"
    )  # one seed
    with open(partial / "summary.csv", newline="") as f:
        assert [r["cell"] for r in csv.DictReader(f)] == [
            "relu_goodinit_seed0",
            "relu_badinit_seed0",
            "relu_badinit_seed1",
            "sigmoid_goodinit_seed0",
            "sigmoid_goodinit_seed1",
        ]
    for name in ("heatmap.png", "curves.png"):
        assert (partial / name).read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
def test_inside_the_network_columns_and_the_mechanism_figure(tmp_path):
    """Diagnostics on (the default; smoke.yaml turns them off): relu at lr 2, good and bad init, in this process."""
    from bn_lab import api

    grid = api.sweep(
        REPO / "configs" / "smoke.yaml",
        ["init.scale=good:0.05,bad:5"],
        seeds=[0],
        results=tmp_path,
        progress="none",
        overrides={
            "diagnostics.enabled": True,
            "optimizer.learning_rate": 2,
            "train.steps": 60,
            "train.eval_every": 20,
        },
        executor="inprocess",
    )
    report_md = (grid.path / "report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in report_md.splitlines() if line.startswith("| ")}
    header = [c.strip() for c in rows["init.scale"].strip("|").split("|")]
    for point, init in (("goodinit", "good (0.05)"), ("badinit", "bad (5)")):
        row = dict(zip(header, (c.strip() for c in rows[init].strip("|").split("|"))))
        for column, text in expected(grid.path, point, 0.9).items():
            assert row[column] == text, (point, column)
    bad = dict(zip(header, (c.strip() for c in rows["bad (5)"].strip("|").split("|"))))
    assert bad["dead/saturated, last layer, without BN"] == "—"  # diverged at once: no end of training
    assert float(bad["BN effective lr, last layer"].split()[0]) < 2 / 5.0**2 / 10  # lr/‖w‖² with ‖w‖ ~ 5·√100
    assert "Inside the network (diagnostics on)" in report_md and "`mechanism.png` draws both" in report_md
    assert (grid.path / "mechanism.png").read_bytes().startswith(PNG_MAGIC)
    assert "(summary.csv, heatmap.png, curves.png, mechanism.png)\n" in grid.report()  # the printed list names it


@pytest.mark.slow
def test_the_printed_table_fits_100_columns_and_wide_prints_the_reports_whole_table(smoke, tmp_path):
    done = bnlab("report", smoke)
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table and max(map(len, table)) <= 100
    assert [c.strip() for c in table[0].split("|")[1:6]] == [
        "model.activation",
        "init.scale",
        "seeds",
        "late noBN",
        "late BN",
    ]
    wide = bnlab("report", smoke, "--wide")
    whole = [line for line in (smoke / "report.md").read_text().splitlines() if line.startswith("|")]
    assert [line for line in wide.stdout.splitlines() if line.startswith("|")] == whole
    assert max(map(len, whole)) > 100
    shown = bnlab("show", smoke, "--wide", cwd=tmp_path)
    assert [line for line in shown.stdout.splitlines() if line.startswith("|")] == whole


@pytest.mark.slow
def test_report_needs_no_tensorflow(smoke, tmp_path):
    copy = tmp_path / "smoke_grid"
    shutil.copytree(smoke, copy)
    code = (
        "import sys; from bn_lab.report.sweep_report import write_report\n"
        f"text = write_report({str(copy)!r})\n"
        "assert 'tensorflow' not in sys.modules, 'the report imported TensorFlow'\n"
        "print(text)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sweep smoke_grid: 8 of 8 cells finished")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "no such directory"),
        (lambda d: d.mkdir(), "not a sweep directory (no sweep.json; `bnlab sweep` writes it)"),
        # issue 8: a sweep.json of the wrong shape is one line, not a KeyError
        (lambda d: manifest(d, []), "sweep.json: not a bn_lab sweep manifest (a JSON list, not an object); rerun"),
        (
            lambda d: manifest(d, {"name": "x", "axes": [], "seeds": [0]}),
            "sweep.json: not a bn_lab sweep manifest ('cells' must be a list)",
        ),
        (
            lambda d: manifest(d, {"name": "x", "axes": [], "seeds": [0], "cells": [{"name": "c"}]}),
            "sweep.json: not a bn_lab sweep manifest (cells[0] needs name, point, seed, indices, grid, config_digest)",
        ),
    ],
)
def test_report_of_something_else_is_a_one_line_error(make, message, tmp_path):
    target = tmp_path / "nothing"
    make(target)
    done = bnlab("report", target)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {target}") and message in done.stderr and done.stderr.count("\n") == 1


def manifest(directory: Path, content) -> None:
    directory.mkdir()
    (directory / "sweep.json").write_text(json.dumps(content))


@pytest.mark.slow
def test_the_figures_draw_the_cells_numbers(smoke, tmp_path, monkeypatch):
    """heatmap.png colours and annotates each grid point's mean over seeds; curves.png draws every
    seed's validation curve from its metrics.csv: read from the figures as drawn, not the PNG's size."""
    from bn_lab.disk import files
    from bn_lab.report.sweep_report import write_report

    copy = tmp_path / "smoke_grid"
    shutil.copytree(smoke, copy)
    drawn, save = {}, files.save_figure
    monkeypatch.setattr(
        files,
        "save_figure",
        lambda path, figure, **kw: (drawn.update({Path(path).name: figure}), save(path, figure, **kw)),
    )
    write_report(copy)
    # the smoke grid has relu cells with a bad init and no numeric axis: mechanism.png, not along_axis.png
    assert set(drawn) == {"heatmap.png", "curves.png"} | (
        {"mechanism.png"} if (copy / "mechanism.png").exists() else set()
    )
    for name in ("heatmap.png", "curves.png"):
        assert (copy / name).read_bytes().startswith(PNG_MAGIC)

    # heatmap: rows are the activations, columns the inits (the last axis; no learning-rate axis).
    panels = {ax.get_title(): ax for ax in drawn["heatmap.png"].axes if ax.images}
    assert set(panels) == {"without BN", "with BN"}
    for variant, title in (("without_bn", "without BN"), ("with_bn", "with BN")):
        image = panels[title].images[0].get_array()
        texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in panels[title].texts}
        for r, activation in enumerate(("relu", "sigmoid")):
            for c, init in enumerate(("good", "bad")):
                cells = [
                    json.loads(p.read_text())["variants"][variant]
                    for p in copy.glob(f"{activation}_{init}init_seed*/summary.json")
                ]
                late = [v["late_val_accuracy"]["mean"] for v in cells if not v["diverged"]]
                if not late:
                    assert image.mask[r, c] and texts[r, c] == f"diverged\n{len(cells)}/{len(cells)}"
                    continue
                assert image[r, c] == pytest.approx(statistics.mean(late))
                spread = f"±{statistics.stdev(late):.2f}" if len(late) > 1 else ""
                assert texts[r, c].startswith(f"{statistics.mean(late):.2f}{spread}\n"), (variant, activation, init)

    # curves: one panel per grid point, with each seed's curve of both networks.
    # Each panel titled as the report names its grid point's values.
    titles = {
        f"{a}, {'good (0.05)' if i == 'goodinit' else 'bad (5)'}": f"{a}_{i}" for a, i in (p.split("_") for p in POINTS)
    }
    axes = {titles[ax.get_title()]: ax for ax in drawn["curves.png"].axes if ax.get_visible()}
    assert sorted(axes) == sorted(POINTS)
    for point, ax in axes.items():
        # Each seed's curve (the x of a diverged one, and its dotted run to the x, left out).
        curves = sorted(
            tuple(line.get_ydata()) for line in ax.lines if line.get_marker() != "x" and line.get_linestyle() != ":"
        )
        expected_curves = []
        for cell in sorted(copy.glob(f"{point}_seed*")):
            with open(cell / "metrics.csv", newline="") as f:
                rows = [r for r in csv.DictReader(f) if r["split"] == "validation"]
            for variant in ("without_bn", "with_bn"):
                expected_curves.append(tuple(float(r["accuracy"]) for r in rows if r["variant"] == variant))
        assert curves == sorted(expected_curves), point


# Wilson 95% intervals of k successes in 2 seeds (Brown, Cai & DasGupta 2001), and t(0.975, 1).
WILSON_OF_2 = {0: "0/2 (0.00-0.66)", 1: "1/2 (0.09-0.91)", 2: "2/2 (0.34-1.00)"}
T_975_1 = 12.7062


@pytest.mark.slow
def test_success_rates_and_uplifts_carry_95_percent_intervals(smoke):
    threshold = between_the_seeds(smoke, "relu_goodinit", "with_bn")
    assert bnlab("report", smoke, "--threshold", threshold).returncode == 0
    report_md = (smoke / "report.md").read_text()
    rows = table_rows(report_md)
    for point in POINTS:
        for column in ("without BN", "with BN"):
            successes = int(rows[point][f"success {column}"].split("/")[0])
            assert rows[point][f"success {column}, 95% CI (Wilson)"] == WILSON_OF_2[successes], (point, column)
        summaries = [json.loads(p.read_text()) for p in sorted(smoke.glob(f"{point}_seed*/summary.json"))]
        paired = [
            figure(s["variants"]["with_bn"], "late") - figure(s["variants"]["without_bn"], "late")
            for s in summaries
            if not (s["variants"]["with_bn"]["diverged"] or s["variants"]["without_bn"]["diverged"])
        ]
        if len(paired) == 2:
            mean, half = statistics.mean(paired), T_975_1 * statistics.stdev(paired) / 2**0.5
            assert rows[point]["BN uplift, 95% CI (paired t)"] == two_seed_interval(mean, half), point
        else:
            assert rows[point]["BN uplift, 95% CI (paired t)"] == "—", point
    assert rows["relu_goodinit"]["success with BN, 95% CI (Wilson)"] == "1/2 (0.09-0.91)"
    assert "Wilson's score interval" in report_md


@pytest.mark.slow
def test_the_seeds_table_gives_each_rate_its_wilson_interval(smoke):
    from bn_lab.report import intervals
    from bn_lab.report import sweep_report as report

    text = report.seeds_table(smoke, 0.9)
    summaries = [json.loads(p.read_text()) for p in sorted(smoke.glob("*_seed*/summary.json"))]
    learned = sum(s["variants"]["with_bn"]["outcome"] == "learned" for s in summaries)
    rates = next(line for line in text.splitlines() if line.startswith("95% CI of each rate (Wilson): "))
    assert rates.startswith("95% CI of each rate (Wilson): without BN learned ")
    assert f"with BN learned {intervals.rate_text(learned, 8)}" in rates
    # The paired uplift over the first arm, seed by seed where neither network diverged, with its t interval.
    late = [
        [s["variants"][v]["late_val_accuracy"]["mean"] if not s["variants"][v]["diverged"] else None for v in LESSON]
        for s in summaries
    ]
    paired = [b - a for a, b in late if None not in (a, b)]
    mean, half = (
        statistics.mean(paired),
        intervals.t_975(len(paired) - 1) * statistics.stdev(paired) / len(paired) ** 0.5,
    )
    assert text.splitlines()[-1] == (
        "paired uplift over without BN, late accuracy (95% CI, Student's t on the seed-by-seed differences): "
        f"with BN {mean:+.4f} ± {statistics.stdev(paired):.4f} ({mean - half:+.4f} to {mean + half:+.4f})"
    )


@pytest.mark.slow
def test_summary_csv_carries_each_points_intervals(smoke):
    """summary.csv's point columns: the Wilson interval of each arm's successes at the report's
    threshold, the t interval of the paired uplift, from the cells' own summaries."""
    from bn_lab.report import intervals

    threshold = between_the_seeds(smoke, "relu_goodinit", "with_bn")
    assert bnlab("report", smoke, "--threshold", threshold).returncode == 0
    with open(smoke / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for point in POINTS:
        summaries = [json.loads(p.read_text()) for p in sorted(smoke.glob(f"{point}_seed*/summary.json"))]
        mine = [r for r in rows if r["grid_point"] == point]
        assert len(mine) == 2
        for variant in ("without_bn", "with_bn"):
            reached = sum((figure(s["variants"][variant], "late") or 0) >= threshold for s in summaries)
            low, high = intervals.wilson(reached, 2)
            for r in mine:
                assert (float(r[f"{variant}/point_success_ci_low"]), float(r[f"{variant}/point_success_ci_high"])) == (
                    pytest.approx(low, abs=1e-12),
                    pytest.approx(high, abs=1e-12),
                ), (point, variant)
        paired = [
            figure(s["variants"]["with_bn"], "late") - figure(s["variants"]["without_bn"], "late")
            for s in summaries
            if not (s["variants"]["with_bn"]["diverged"] or s["variants"]["without_bn"]["diverged"])
        ]
        if len(paired) == 2:
            mean, half = statistics.mean(paired), T_975_1 * statistics.stdev(paired) / 2**0.5
            assert float(mine[0]["with_bn/point_uplift_ci_low"]) == pytest.approx(mean - half, rel=1e-9)
            assert float(mine[0]["with_bn/point_uplift_ci_high"]) == pytest.approx(mean + half, rel=1e-9)
        else:
            assert mine[0]["with_bn/point_uplift_ci_low"] == ""
        assert "without_bn/point_uplift_ci_low" not in mine[0]  # the first arm has no uplift over itself


def smoke_sweep_over(tmp_path_factory, grid: str, overrides: dict):
    """configs/smoke.yaml over one grid axis, two seeds, through the Python API."""
    from bn_lab import api

    return api.sweep(
        REPO / "configs" / "smoke.yaml",
        [grid],
        seeds=[0, 1],
        results=tmp_path_factory.mktemp("sweep"),
        progress="none",
        overrides=overrides,
        executor="inprocess",  # what these read is the report: a process per cell would be its cost
    )


@pytest.fixture(scope="module")
def lr_sweep(tmp_path_factory):
    """sigmoid at two learning rates, two seeds, the ICS probe on: the threshold table and the shift columns."""
    return smoke_sweep_over(
        tmp_path_factory,
        "optimizer.learning_rate=0.1,2",
        {
            "model.activation": "sigmoid",
            "model.hidden_units": [16, 12],  # two hidden layers: the figures read the last one's
            "diagnostics.enabled": True,
            "diagnostics.ics": True,
            "diagnostics.probe_images": 100,
            "precise_bn.enabled": False,  # no exact statistics: nothing here reads them
            "train.steps": 40,
            "train.eval_every": 20,
        },
    )


@pytest.mark.slow
def test_the_learning_rate_threshold_table(lr_sweep):
    """Per arm, from the cells' summaries: the largest lr where both seeds reach the threshold,
    the best lr, and BN at the plain network's best lr."""
    summaries = {
        (lr, seed): json.loads((lr_sweep.path / f"lr{lr}_seed{seed}" / "summary.json").read_text())
        for lr in ("0.1", "2")
        for seed in (0, 1)
    }
    late = {k: {v: figure(s["variants"][v], "late") for v in ("without_bn", "with_bn")} for k, s in summaries.items()}
    threshold = round(statistics.median(a for by_arm in late.values() for a in by_arm.values() if a is not None), 6)
    text = lr_sweep.report(threshold=threshold)
    report_md = (lr_sweep.path / "report.md").read_text()
    assert "## Learning-rate threshold" in report_md and "learning-rate threshold:" in text
    section = report_md.split("## Learning-rate threshold")[1]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {
        r["arm"]: r for r in (dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[1:])
    }
    best = {}
    for variant, label in (("without_bn", "without BN"), ("with_bn", "with BN")):
        successes = {lr: sum((late[(lr, s)][variant] or 0) >= threshold for s in (0, 1)) for lr in ("0.1", "2")}
        most = [lr for lr in ("0.1", "2") if successes[lr] == 2]
        assert rows[label][f"largest lr with success on most seeds (>= {threshold:g})"] == (
            most[-1] if most else "none"
        )

        def rank(lr, variant=variant, successes=successes):
            values = [late[(lr, s)][variant] for s in (0, 1) if late[(lr, s)][variant] is not None]
            return successes[lr], statistics.mean(values) if values else -1.0

        best[variant] = max(("0.1", "2"), key=rank)
        assert rows[label]["best lr"] == best[variant]
    at = best["without_bn"]
    assert rows["with BN"]["at without BN's best lr"].startswith(f"lr {at}: ")
    paired = [
        late[(at, s)]["with_bn"] - late[(at, s)]["without_bn"]
        for s in (0, 1)
        if None not in (late[(at, s)]["with_bn"], late[(at, s)]["without_bn"])
    ]
    if len(paired) == 2:
        mean, half = statistics.mean(paired), T_975_1 * statistics.stdev(paired) / 2**0.5
        assert rows["with BN"]["uplift over without BN there, 95% CI (paired t)"] == two_seed_interval(mean, half)


@pytest.mark.slow
def test_the_covariate_shift_columns_and_figure(lr_sweep):
    """Band motion and cos(G, G') over the seeds, the paired difference of band motion, from the
    cells' summaries; each cell draws covariate_shift.png; summary.csv has the per-cell figures."""
    lr_sweep.report()
    report_md = (lr_sweep.path / "report.md").read_text()
    lines = [line for line in report_md.split("## Learning-rate threshold")[0].splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {
        r["optimizer.learning_rate"]: r
        for r in (dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[1:])
    }
    with open(lr_sweep.path / "summary.csv", newline="") as f:
        cells = {r["cell"]: r for r in csv.DictReader(f)}
    for lr in ("0.1", "2"):
        shift = {
            v: [
                json.loads((lr_sweep.path / f"lr{lr}_seed{s}" / "summary.json").read_text())["variants"][v][
                    "covariate_shift"
                ]
                for s in (0, 1)
            ]
            for v in ("without_bn", "with_bn")
        }
        assert rows[lr]["band motion / width with BN"] == mean_text(
            [c["band_motion_relative"] for c in shift["with_bn"]], ".3f"
        )
        assert rows[lr]["cos(G, G′) without BN"] == mean_text([c["ics_cosine"] for c in shift["without_bn"]], ".2f")
        assert rows[lr]["‖G − G′‖/‖G‖ with BN"] == mean_text([c["ics_relative"] for c in shift["with_bn"]], ".3f")
        for quantity, column, digits in (
            ("band_motion_relative", "BN band motion / width − noBN, 95% CI", ".3f"),
            ("ics_cosine", "BN cos(G, G′) − noBN, 95% CI", ".2f"),
        ):
            moved = [b[quantity] - a[quantity] for a, b in zip(shift["without_bn"], shift["with_bn"])]
            mean, half = statistics.mean(moved), T_975_1 * statistics.stdev(moved) / 2**0.5
            assert rows[lr][column] == f"{mean - half:+{digits}} to {mean + half:+{digits}} (n=2)"
        for s in (0, 1):
            for quantity in ("band_motion", "band_motion_relative", "ics_relative"):
                assert (
                    float(cells[f"lr{lr}_seed{s}"][f"with_bn/last_layer_{quantity}"]) == shift["with_bn"][s][quantity]
                )
            assert (lr_sweep.path / f"lr{lr}_seed{s}" / "covariate_shift.png").read_bytes().startswith(PNG_MAGIC)
    assert "Covariate shift (diagnostics.ics" in report_md


@pytest.fixture(scope="module")
def group_sweep(tmp_path_factory):
    """BN over groups of 2, 5 and 10 of the smoke run's batches of 60, two seeds: a numeric axis (along_axis.png
    needs three values)."""
    return smoke_sweep_over(
        tmp_path_factory,
        "bn.group_size=2,5,10",
        {"train.steps": 20, "train.eval_every": 10, "model.hidden_units": [16, 12]},
    )


@pytest.mark.slow
def test_the_batch_statistics_column_and_the_along_axis_figure(group_sweep, monkeypatch):
    """report.md's batch-statistics column and along_axis.png's lines (one per arm and evaluation
    mode, mean over seeds against the group size), from the cells' summaries."""
    from bn_lab.disk import files
    from bn_lab.report.sweep_report import write_report

    drawn, save = {}, files.save_figure
    monkeypatch.setattr(
        files,
        "save_figure",
        lambda path, figure, **kw: (drawn.update({Path(path).name: figure}), save(path, figure, **kw)),
    )
    write_report(group_sweep.path)
    assert (group_sweep.path / "along_axis.png").read_bytes().startswith(PNG_MAGIC)
    report_md = (group_sweep.path / "report.md").read_text()
    lines = [line for line in report_md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {
        r["bn.group_size"]: r
        for r in (dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:])
    }
    ax = drawn["along_axis.png"].axes[0]
    by_style = {(line.get_color(), line.get_linestyle()): line for line in ax.lines}
    late = {}
    for g in (2, 5, 10):
        cells = [json.loads((group_sweep.path / f"group_size{g}_seed{s}" / "summary.json").read_text()) for s in (0, 1)]
        for section, linestyle in ((None, "-"), ("precise_bn", "--"), ("batch_stats", ":")):
            values = [
                (c["variants"]["with_bn"][section] if section else c["variants"]["with_bn"])["late_val_accuracy"][
                    "mean"
                ]
                for c in cells
            ]
            late.setdefault(linestyle, []).append(statistics.mean(values))
        batch = [c["variants"]["with_bn"]["batch_stats"]["late_val_accuracy"]["mean"] for c in cells]
        assert rows[str(g)]["late val acc with BN, batch stats"] == mean_text(batch, ".4f")
    for linestyle, means in late.items():
        line = by_style[("tab:blue", linestyle)]
        assert list(line.get_xdata()) == [2, 5, 10]
        assert list(line.get_ydata()) == pytest.approx(means)
    assert ("tab:red", ":") not in by_style  # the plain network has no batch statistics
    assert "`along_axis.png`" in report_md


def test_an_arm_that_diverged_at_every_learning_rate_has_no_best_one():
    """Its figures are all missing: the best learning rate is none, not the largest tried (issue 33)."""
    from bn_lab.config import arms
    from bn_lab.report import lr_threshold
    from bn_lab.report.sweep_results import Point

    def cell(plain: float | None, bn: float):
        def network(late):
            return {
                "diverged": late is None,
                "outcome": "diverged" if late is None else "learned",
                "final_val_accuracy": late,
                "late_val_accuracy": None if late is None else {"mean": late, "min": late, "max": late},
            }

        return {"variants": {"without_bn": network(plain), "with_bn": network(bn)}}

    manifest = {"axes": [{"key": lr_threshold.KEY, "values": [0.1, 1e6], "labels": None}]}
    points = [
        Point("lr0.1", {lr_threshold.KEY: "0.1"}, (0,), 2, [cell(None, 0.95), cell(None, 0.93)]),
        Point("lr1e6", {lr_threshold.KEY: "1e+06"}, (1,), 2, [cell(None, 0.5), cell(None, 0.4)]),
    ]
    header, *rows = lr_threshold.table(manifest, points, dict(arms.LESSON_STYLES), 0.9)
    found = {row[0]: dict(zip(header, row)) for row in rows}
    plain, bn = found["without BN"], found["with BN"]
    assert (plain["best lr"], plain["at its best lr (mean ± std, successes, 95% CI)"]) == (
        "none",
        "diverged at every learning rate",
    )
    assert plain["largest lr with success on most seeds (>= 0.9)"] == "none"
    assert plain["at without BN's best lr"] == bn["at without BN's best lr"] == "—"
    assert bn["best lr"] == "0.1" and bn["largest lr with success on most seeds (>= 0.9)"] == "0.1"
