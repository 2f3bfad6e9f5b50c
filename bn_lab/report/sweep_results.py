"""A sweep's results, read: every cell's summary grouped by grid point (Point), the cells missing,
stale, damaged or failed (SweepResults), and one network's figures as the report aggregates them.

It reads only files: the sweep's manifest (sweep.json, which lists every cell, so missing ones
are known) and each finished cell's summary.json and metrics.csv. It works on a partial sweep,
and never imports TensorFlow. bn_lab.report.sweep_report writes the report from it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path

from bn_lab.config import arms
from bn_lab.config.yaml_io import SweepError, shown
from bn_lab.disk import files
from bn_lab.report import outcome
from bn_lab.store import rundir, schema, sweep_manifest


class ReportError(SweepError):
    """Not a sweep directory, or an unreadable manifest; worded for the user."""


def figure_of(variant_summary: dict, figure: str) -> float | None:
    """One network's accuracy as the report aggregates it (None: diverged, no accuracy)."""
    if variant_summary["diverged"]:
        return None
    if figure == "late":
        late = variant_summary.get("late_val_accuracy")
        return late["mean"] if late else variant_summary["final_val_accuracy"]
    if figure == "best":
        best = variant_summary.get("best_val_accuracy")
        return best["accuracy"] if best else None
    return variant_summary["final_val_accuracy"]


def outcome_of(variant_summary: dict) -> str:
    return variant_summary.get("outcome") or (schema.DIVERGED if variant_summary["diverged"] else schema.LEARNED)


def measured_inside(results, section: str = "diagnostics") -> bool:
    """Whether any finished cell of the sweep had its diagnostics on (section "covariate_shift": the ICS probe)."""
    return any(section in v for s in results.summaries.values() for v in s["variants"].values())


def inactive_fraction(diagnostics: dict) -> float | None:
    return diagnostics.get("dead_fraction", diagnostics.get("saturated_fraction"))


@dataclass
class Point:
    """One grid point (its seeds together)."""

    name: str
    grid: dict  # key -> display value
    indices: tuple
    planned: int = 0
    summaries: list[dict] = field(default_factory=list)  # finished seeds' summary.json
    figure: str = "late"

    def accuracies(self, variant: str, statistics: str | None = None) -> list[float]:
        """The seeds' accuracies, diverged seeds left out (they have none), collapsed ones in.

        statistics: "precise_bn" or "batch_stats", the same figure with exact or with batch
        statistics (the seeds that measured it)."""
        values = []
        for s in self.summaries:
            r = s["variants"][variant]
            if statistics is not None:
                r = {**r[statistics], "diverged": r["diverged"]} if r.get(statistics) else None
            values.append(None if r is None else figure_of(r, self.figure))
        return [a for a in values if a is not None]

    def diverged(self, variant: str) -> int:
        return sum(1 for s in self.summaries if figure_of(s["variants"][variant], self.figure) is None)

    def outcomes(self, variant: str) -> dict[str, int]:
        counts = dict.fromkeys(schema.OUTCOMES, 0)
        for s in self.summaries:
            counts[outcome_of(s["variants"][variant])] += 1
        return counts

    def successes(self, variant: str, threshold: float) -> int:
        return sum(1 for a in self.accuracies(variant) if a >= threshold)

    def inside(self, variant: str, quantity: str, section: str = "diagnostics") -> list[float]:
        """A figure of the last hidden layer (summary.json's `diagnostics`: at the end of training;
        its `covariate_shift`: over training), over the seeds where the network did not diverge;
        "inactive" is the dead (relu) or saturated (sigmoid) fraction."""
        values = []
        for s in self.summaries:
            r = s["variants"][variant]
            found = {} if r["diverged"] else (r.get(section) or {})
            value = inactive_fraction(found) if quantity == "inactive" else found.get(quantity)
            if value is not None:
                values.append(value)
        return values

    def uplifts(self, variant: str, reference: str) -> list[float]:
        """variant's figure minus reference's, seed by seed (same initial weights, same batches),
        over the seeds where neither diverged."""
        pairs = ([figure_of(s["variants"][v], self.figure) for v in (reference, variant)] for s in self.summaries)
        return [value - base for base, value in pairs if base is not None and value is not None]


@dataclass
class SweepResults:
    manifest: dict
    points: list[Point]
    summaries: dict  # cell name -> summary.json, finished cells whose config is the manifest's
    missing: list[str]  # not finished (never run, interrupted or failed)
    stale: list[str]  # finished, but with a config other than the sweep's
    damaged: dict  # cell -> what is wrong: finished once, but its files do not read back
    failed: dict  # cell -> error, from failed.json
    curves: dict = field(default_factory=dict)  # cell -> validation_curves of its metrics.csv, as it was read

    @property
    def styles(self) -> dict[str, dict]:
        """The arms of the finished cells (arms.recorded), in their order; none finished: the lesson's."""
        found = {}
        for s in self.summaries.values():
            for name, style in arms.recorded(s).items():
                found.setdefault(name, style)
        return found or dict(arms.LESSON_STYLES)


def check_options(threshold, figure: str) -> None:
    """The report's options, checked before a sweep trains anything (NaN is not in (0, 1])."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold <= 1:
        raise ReportError(f"--threshold {shown(threshold)}: must be a number in (0, 1]")
    if figure not in outcome.FIGURES:
        raise ReportError(f"--figure {shown(figure)}: unknown figure; allowed: {', '.join(outcome.FIGURES)}")


def collect(sweep_dir: str | Path, figure: str = "late") -> SweepResults:
    """Every cell's summary, grouped by grid point; `figure` is the accuracy the points aggregate."""
    check_options(1, figure)
    sweep_dir = Path(sweep_dir)
    manifest = sweep_manifest.load_manifest(sweep_dir)
    points: dict[str, Point] = {}
    summaries, curves, missing, stale, damaged = {}, {}, [], [], {}
    for cell in manifest["cells"]:
        point = points.setdefault(
            cell["point"], Point(cell["point"], cell["grid"], tuple(cell["indices"]), figure=figure)
        )
        point.planned += 1
        found = rundir.read_finished(sweep_dir / cell["name"])  # read once: what the report uses is what was checked
        if found == rundir.NOT_FINISHED:
            missing.append(cell["name"])
            continue
        if isinstance(found, str):
            damaged[cell["name"]] = found
            continue
        summary, rows = found
        if summary.get("config_digest") != cell["config_digest"]:
            stale.append(cell["name"])
            continue
        summaries[cell["name"]] = summary
        curves[cell["name"]] = validation_curves(rows)
        point.summaries.append(summary)
    try:
        failed = {k: str(v["error"]) for k, v in files.read_json(sweep_dir / rundir.FAILURES).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # damaged: the report goes on without it
        failed = {}
    return SweepResults(
        manifest, list(points.values()), summaries, missing, stale, damaged=damaged, failed=failed, curves=curves
    )


def validation_curves(rows: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """{arm: (steps, accuracies)} of its validation evaluations, from metrics.csv's rows."""
    curves = {}
    for row in rows:
        if row["split"] == schema.VALIDATION:
            steps, accuracies = curves.setdefault(row["variant"], ([], []))
            steps.append(int(row["step"]))
            accuracies.append(float(row["accuracy"]))
    return curves
