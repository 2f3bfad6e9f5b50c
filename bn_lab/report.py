"""The report of a sweep: summary.csv, report.md, heatmap.png and curves.png in its directory.

It reads only files: the sweep's manifest (sweep.json, which lists every cell, so missing
ones are known) and each finished cell's summary.json and metrics.csv. It works on a
partial sweep, and never imports TensorFlow.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bn_lab import experiment, files
from bn_lab.sweep import Axis, SweepError

VARIANTS = ("without_bn", "with_bn")
VARIANT_TEXT = {"without_bn": "without BN", "with_bn": "with BN"}
CONVENTIONS = """\
How to read it: accuracies are final validation accuracies, as mean ± sample standard deviation
over the seeds whose network finished. A network whose loss became NaN/inf has *diverged*: it
has no accuracy, so it is left out of the mean and counted instead, e.g. `0.1135 ± 0.0010
(1/3 diverged)`. The BN uplift is the mean ± std over seeds of the paired difference with BN −
without BN (both networks of a seed start from the same weights and see the same batches), over
the seeds where neither network diverged. Success counts the seeds whose final validation
accuracy reached {threshold:g}; a diverged network is a failure. `seeds` is finished/planned."""


class ReportError(SweepError):
    """Not a sweep directory, or an unreadable manifest; worded for the user."""


@dataclass
class Point:
    """One grid point (its seeds together)."""

    name: str
    grid: dict  # key -> display value
    indices: tuple
    planned: int = 0
    summaries: list[dict] = field(default_factory=list)  # finished seeds' summary.json

    def accuracies(self, variant: str) -> list[float]:
        return [s["variants"][variant]["final_val_accuracy"] for s in self.summaries if not _diverged(s, variant)]

    def diverged(self, variant: str) -> int:
        return sum(1 for s in self.summaries if _diverged(s, variant))

    def successes(self, variant: str, threshold: float) -> int:
        return sum(1 for a in self.accuracies(variant) if a >= threshold)

    def uplifts(self) -> list[float]:
        return [
            s["variants"]["with_bn"]["final_val_accuracy"] - s["variants"]["without_bn"]["final_val_accuracy"]
            for s in self.summaries
            if not any(_diverged(s, v) for v in VARIANTS)
        ]


def _diverged(summary: dict, variant: str) -> bool:
    v = summary["variants"][variant]
    return bool(v["diverged"]) or v["final_val_accuracy"] is None


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None where undefined)."""
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _mean_text(values: list[float], signed: bool = False) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "—"
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text + (f" ± {std:.4f}" if std is not None else "")


def accuracy_text(point: Point, variant: str) -> str:
    done, diverged = len(point.summaries), point.diverged(variant)
    if not done:
        return "—"
    if diverged == done:
        return f"diverged ({diverged}/{done})"
    return _mean_text(point.accuracies(variant)) + (f" ({diverged}/{done} diverged)" if diverged else "")


# --- reading ---------------------------------------------------------------------------


def load_manifest(sweep_dir: str | Path) -> dict:
    path = Path(sweep_dir) / "sweep.json"
    if not Path(sweep_dir).is_dir():
        raise ReportError(f"{sweep_dir}: no such directory")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{sweep_dir}: not a sweep directory (no sweep.json; `bnlab sweep` writes it)") from None
    except (OSError, ValueError) as e:
        raise ReportError(f"{path}: unreadable ({e})") from None


@dataclass
class SweepResults:
    manifest: dict
    points: list[Point]
    summaries: dict  # cell name -> summary.json, finished cells whose config is the manifest's
    missing: list[str]  # not finished (never run, interrupted or failed)
    stale: list[str]  # finished, but with a config other than the sweep's
    failed: dict  # cell -> error, from failed.json


def collect(sweep_dir: str | Path) -> SweepResults:
    sweep_dir = Path(sweep_dir)
    manifest = load_manifest(sweep_dir)
    points: dict[str, Point] = {}
    summaries, missing, stale = {}, [], []
    for cell in manifest["cells"]:
        point = points.setdefault(cell["point"], Point(cell["point"], cell["grid"], tuple(cell["indices"])))
        point.planned += 1
        run_dir = sweep_dir / cell["name"]
        if not experiment.is_complete(run_dir):
            missing.append(cell["name"])
            continue
        summary = experiment.load_summary(run_dir)
        if summary.get("config_digest") != cell["config_digest"]:
            stale.append(cell["name"])
            continue
        summaries[cell["name"]] = summary
        point.summaries.append(summary)
    try:
        failed = {k: v["error"] for k, v in json.loads((sweep_dir / "failed.json").read_text()).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        failed = {}
    return SweepResults(manifest, list(points.values()), summaries, missing, stale, failed)


def validation_curve(run_dir: Path, variant: str) -> tuple[list[int], list[float]]:
    steps, accuracies = [], []
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["variant"] == variant and row["split"] == "validation":
                steps.append(int(row["step"]))
                accuracies.append(float(row["accuracy"]))
    return steps, accuracies


# --- writing ---------------------------------------------------------------------------


def summary_columns(manifest: dict) -> list[str]:
    columns = ["cell", "grid_point"]
    for axis in manifest["axes"]:
        columns.append(axis["key"])
        if axis["labels"]:
            columns.append(f"{axis['key']}_value")
    columns.append("seed")
    for metric in (
        "final_val_accuracy",
        "test_accuracy",
        "single_sample_inference",
        "single_sample_training",
        "diverged",
        "diverged_at_step",
        "steps_per_second",
    ):
        columns += [f"{v}_{metric}" for v in VARIANTS]
    return columns + ["wall_seconds"]


def summary_rows(results: SweepResults) -> list[dict]:
    """One row per finished cell (grid point and seed), in the sweep's order."""
    rows = []
    for cell in results.manifest["cells"]:
        s = results.summaries.get(cell["name"])
        if s is None:
            continue
        row = {"cell": cell["name"], "grid_point": cell["point"], "seed": cell["seed"]}
        row["wall_seconds"] = s["wall_seconds"]
        for axis, i in zip(results.manifest["axes"], cell["indices"]):
            if axis["labels"]:
                row[axis["key"]], row[f"{axis['key']}_value"] = axis["labels"][i], axis["values"][i]
            else:
                row[axis["key"]] = axis["values"][i]
        for v in VARIANTS:
            r = s["variants"][v]
            row[f"{v}_final_val_accuracy"] = r["final_val_accuracy"]
            row[f"{v}_test_accuracy"] = r["test_accuracy"]
            row[f"{v}_single_sample_inference"] = r["single_sample"]["inference"]
            row[f"{v}_single_sample_training"] = r["single_sample"]["training"]
            row[f"{v}_diverged"] = r["diverged"]
            row[f"{v}_diverged_at_step"] = r["diverged_at_step"]
            row[f"{v}_steps_per_second"] = r["steps_per_second"]
        rows.append(row)
    return rows


def table(results: SweepResults, threshold: float) -> list[list[str]]:
    """report.md's table: a header row, then one row per grid point."""
    keys = [a["key"] for a in results.manifest["axes"]]
    header = keys + [
        "seeds",
        "val acc without BN",
        "val acc with BN",
        "BN uplift",
        "success without BN",
        "success with BN",
    ]
    rows = [header]
    for p in results.points:
        done = len(p.summaries)
        rows.append(
            [p.grid[k] for k in keys]
            + [
                f"{done}/{p.planned}",
                accuracy_text(p, "without_bn"),
                accuracy_text(p, "with_bn"),
                _mean_text(p.uplifts(), signed=True) if done else "—",
                f"{p.successes('without_bn', threshold)}/{done}" if done else "—",
                f"{p.successes('with_bn', threshold)}/{done}" if done else "—",
            ]
        )
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    """Aligned, so that it reads as well in a terminal as rendered."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule] + [line(r) for r in rows[1:]])


def write_report(sweep_dir: str | Path, threshold: float = 0.9) -> str:
    """Writes summary.csv, report.md, heatmap.png and curves.png; returns the text to print."""
    if not 0 < threshold <= 1:
        raise ReportError(f"--threshold {threshold}: must be in (0, 1]")
    sweep_dir = Path(sweep_dir)
    results = collect(sweep_dir)
    manifest = results.manifest
    files.write_csv(sweep_dir / "summary.csv", summary_rows(results), summary_columns(manifest))

    cells = manifest["cells"]
    seeds = ", ".join(str(s) for s in manifest["seeds"])
    axes = " × ".join(f"{a['key']} ({len(a['values'])})" for a in manifest["axes"])
    status = f"{len(results.summaries)} of {len(cells)} cells finished"
    lines = [
        f"# Sweep `{manifest['name']}`",
        "",
        f"Base config `{manifest['base']}`; grid {axes}; seeds {seeds}; {status}.",
    ]
    if manifest.get("set"):
        settings = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in manifest["set"].items())
        lines.append(f"Set on every cell: {settings}.")
    table_text = markdown_table(table(results, threshold))
    lines += ["", table_text, "", CONVENTIONS.format(threshold=threshold), ""]
    notes = _incomplete_notes(results)
    lines += notes
    lines += ["Figures: `heatmap.png` (mean final validation accuracy per grid point), "
              "`curves.png` (validation curves, every seed); per cell: `<cell>/accuracy.png`.", ""]
    files.write_text(sweep_dir / "report.md", "\n".join(lines))

    _heatmap(results, sweep_dir / "heatmap.png")
    _curves(results, sweep_dir / "curves.png")
    printed = [f"sweep {manifest['name']}: {status}", table_text] + [n for n in notes if n]
    printed.append(f"report: {sweep_dir}/report.md (summary.csv, heatmap.png, curves.png)")
    return "\n".join(printed)


def _incomplete_notes(results: SweepResults) -> list[str]:
    notes = []
    failed = [n for n in results.missing if n in results.failed]
    missing = [n for n in results.missing if n not in results.failed]
    if missing:
        notes += [f"Missing: {_cells(len(missing))} not run or not finished: " + ", ".join(missing), ""]
    if failed:
        notes += [f"Failed: {_cells(len(failed))}, errors with tracebacks in failed.json:"]
        notes += [f"- {n}: {results.failed[n]}" for n in failed] + [""]
    if results.stale:
        notes += [
            f"Left out: {_cells(len(results.stale))} finished with a config other than this sweep's "
            "(rerun the sweep with --force): " + ", ".join(results.stale),
            "",
        ]
    return notes


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


# --- figures ---------------------------------------------------------------------------


def layout(manifest: dict) -> tuple[list[int], int | None]:
    """(row axes, column axis) of the figures: learning rate across if it is an axis, else the last axis."""
    keys = [a["key"] for a in manifest["axes"]]
    column = keys.index("optimizer.learning_rate") if "optimizer.learning_rate" in keys else len(keys) - 1
    return [i for i in range(len(keys)) if i != column], column


def _figure_grid(results: SweepResults):
    """Row and column labels, and each point's (row, column)."""
    axes = [
        Axis(a["key"], tuple(a["values"]), tuple(a["labels"]) if a["labels"] else None)
        for a in results.manifest["axes"]
    ]
    row_axes, column_axis = layout(results.manifest)
    row_keys, places = [], {}
    for p in results.points:
        row_key = tuple(p.indices[i] for i in row_axes)
        if row_key not in row_keys:
            row_keys.append(row_key)
        places[p.name] = (row_keys.index(row_key), p.indices[column_axis])
    row_labels = ["_".join(axes[a].fragment(i) for a, i in zip(row_axes, key)) for key in row_keys]
    column_labels = [axes[column_axis].fragment(i) for i in range(len(axes[column_axis].values))]
    return row_labels, column_labels, places, axes[column_axis].key


def _heatmap(results: SweepResults, path: Path) -> None:
    from bn_lab import plots

    row_labels, column_labels, places, column_key = _figure_grid(results)
    panels = {}
    for v in VARIANTS:
        values = [[math.nan] * len(column_labels) for _ in row_labels]
        texts = [["missing"] * len(column_labels) for _ in row_labels]
        hatched = [[False] * len(column_labels) for _ in row_labels]
        for p in results.points:
            r, c = places[p.name]
            done, diverged = len(p.summaries), p.diverged(v)
            mean, std = mean_std(p.accuracies(v))
            if not done:
                continue
            if mean is None:
                texts[r][c], hatched[r][c] = f"diverged\n{diverged}/{done}", True
                continue
            values[r][c] = mean
            texts[r][c] = f"{mean:.2f}" + (f"±{std:.2f}" if std is not None else "")
            texts[r][c] += f"\n{diverged}/{done} div." if diverged else f"\nn={done}"
        panels[v] = {"values": values, "texts": texts, "hatched": hatched}
    title = f"sweep {results.manifest['name']}: final validation accuracy (mean over seeds)"
    plots.heatmap(panels, row_labels, column_labels, path, title, column_title=column_key)


def _curves(results: SweepResults, path: Path) -> None:
    from bn_lab import plots

    row_labels, column_labels, places, _ = _figure_grid(results)
    sweep_dir = path.parent
    by_cell = {c["name"]: c for c in results.manifest["cells"]}
    panels = []
    for p in results.points:
        lines = []
        for name, cell in by_cell.items():
            if cell["point"] != p.name or name not in results.summaries:
                continue
            for v in VARIANTS:
                steps, accuracies = validation_curve(sweep_dir / name, v)
                at = results.summaries[name]["variants"][v]["diverged_at_step"]
                lines.append(
                    {"variant": v, "seed": cell["seed"], "steps": steps, "accuracies": accuracies, "diverged_at": at}
                )
        row, column = places[p.name]
        panels.append({"title": p.name, "row": row, "column": column, "lines": lines})
    title = f"sweep {results.manifest['name']}: validation accuracy (every seed)"
    plots.curves(panels, len(row_labels), len(column_labels), path, title)
