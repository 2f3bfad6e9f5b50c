"""`bnlab report` on a real (tiny) sweep: aggregation over seeds, partial sweeps, bad input.

The expected numbers are computed here from the cells' summary.json files, independently
of bn_lab.report.
"""

import csv
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BNLAB = Path(sys.executable).with_name("bnlab")
POINTS = ["relu_goodinit", "relu_badinit", "sigmoid_goodinit", "sigmoid_badinit"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def bnlab(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BNLAB), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke sweep (8 cells, 2 seeds per grid point), in a process of its own."""
    results = tmp_path_factory.mktemp("report")
    done = subprocess.run(
        [str(BNLAB), "sweep", REPO / "configs" / "sweep_smoke.yaml", "--results", results, "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # --quiet
    return results / "smoke_grid"


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


def expected(sweep_dir: Path, point: str, threshold: float, which: str = "late") -> dict:
    summaries = [
        json.loads(path.read_text()) for path in sorted(sweep_dir.glob(f"{point}_seed*/summary.json"))
    ]
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
        counts = {o: sum(v["outcome"] == o for v in finished) for o in ("learned", "collapsed", "diverged")}
        text[f"outcomes {column}"] = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    paired = [
        figure(s["variants"]["with_bn"], which) - figure(s["variants"]["without_bn"], which)
        for s in summaries
        if not (s["variants"]["with_bn"]["diverged"] or s["variants"]["without_bn"]["diverged"])
    ]
    if paired:
        text["BN uplift"] = f"{statistics.mean(paired):+.4f}" + (
            f" ± {statistics.stdev(paired):.4f}" if len(paired) > 1 else ""
        )
    else:
        text["BN uplift"] = "—"
    return text


def test_aggregates_over_seeds_match_the_cells_summaries(smoke):
    threshold = 0.88  # between the two seeds of relu with BN (0.872, 0.886): success 1/2
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
    assert "reached 0.88; a diverged network is a failure" in report_md
    assert "the lesson's TF1 code printed 0.1000 for it" in report_md  # class 0's share of these 500 images

    final = bnlab("report", smoke, "--threshold", threshold, "--figure", "final")
    assert final.returncode == 0, final.stderr
    rows = table_rows((smoke / "report.md").read_text())
    for point in POINTS:
        for column, text in expected(smoke, point, threshold, "final").items():
            assert rows[point][column] == text, (point, column)
    assert "| relu_goodinit" not in done.stdout and "| relu             | good (0.05)" in done.stdout


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
    missing = "Missing: 3 cells not run or not finished: relu_goodinit_seed1, sigmoid_badinit_seed0, sigmoid_badinit_seed1"
    assert missing in report_md and missing in done.stdout
    rows = table_rows(report_md)
    assert rows["sigmoid_badinit"]["seeds"] == "0/2"
    assert rows["sigmoid_badinit"]["late val acc with BN"] == "—" and rows["sigmoid_badinit"]["success with BN"] == "—"
    assert rows["relu_goodinit"]["seeds"] == "1/2"
    seed0 = json.loads((partial / "relu_goodinit_seed0" / "summary.json").read_text())["variants"]
    assert rows["relu_goodinit"]["late val acc with BN"] == f"{seed0['with_bn']['late_val_accuracy']['mean']:.4f}"  # one seed
    with open(partial / "summary.csv", newline="") as f:
        assert [r["cell"] for r in csv.DictReader(f)] == [
            "relu_goodinit_seed0", "relu_badinit_seed0", "relu_badinit_seed1", "sigmoid_goodinit_seed0", "sigmoid_goodinit_seed1",
        ]  # fmt: skip
    for name in ("heatmap.png", "curves.png"):
        assert (partial / name).read_bytes().startswith(PNG_MAGIC)


def test_report_needs_no_tensorflow(smoke, tmp_path):
    copy = tmp_path / "smoke_grid"
    shutil.copytree(smoke, copy)
    code = (
        "import sys; from bn_lab.report import write_report\n"
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
        (lambda d: manifest(d, {"name": "x", "axes": [], "seeds": [0]}), "sweep.json: not a bn_lab sweep manifest ('cells' must be a list)"),
        (lambda d: manifest(d, {"name": "x", "axes": [], "seeds": [0], "cells": [{"name": "c"}]}),
         "sweep.json: not a bn_lab sweep manifest (cells[0] needs name, point, seed, indices, grid, config_digest)"),
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
