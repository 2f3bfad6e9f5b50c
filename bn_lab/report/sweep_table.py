"""A sweep's tables, from its results as bn_lab.report.sweep_results reads them: summary.csv's rows
(one per cell, each arm's figures as `<arm>/<figure>` columns) and report.md's table (one row per
grid point, over seeds, with the 95% intervals). bn_lab.report.sweep_report writes them."""

from __future__ import annotations

import re

from bn_lab.config import arms
from bn_lab.config.user_text import printable
from bn_lab.report import intervals, outcome
from bn_lab.report.sweep_results import (
    Point,
    SweepResults,
    inactive_fraction,
    measured_inside,
    outcome_of,
)
from bn_lab.store import schema

SHIFT_FIGURES = ("band_motion", "band_motion_relative", "ics_l2", "ics_relative", "ics_cosine")


def mean_text(values: list[float], signed: bool = False, digits: str = ".4f") -> str:
    mean, std = outcome.mean_std(values)
    if mean is None:
        return "—"
    text = f"{mean:+{digits}}" if signed else f"{mean:{digits}}"
    return text + (f" ± {std:{digits}}" if std is not None else "")


def accuracy_text(point: Point, variant: str) -> str:
    done, diverged = len(point.summaries), point.diverged(variant)
    if not done:
        return "—"
    if diverged == done:
        return f"diverged ({diverged}/{done})"
    return mean_text(point.accuracies(variant)) + (f" ({diverged}/{done} diverged)" if diverged else "")


def outcome_text(point: Point, variant: str) -> str:
    """e.g. `2 learned, 1 collapsed` (outcomes with no seed left out)."""
    counts = point.outcomes(variant)
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "—"


# --- writing ---------------------------------------------------------------------------


def _cell_figures(r: dict) -> dict:
    """summary.csv's numbers of one network (an older summary without the robust figures: blanks)."""
    late, best = r.get("late_val_accuracy") or {}, r.get("best_val_accuracy") or {}
    precise, batch = r.get("precise_bn") or {}, r.get("batch_stats") or {}
    return {
        "outcome": outcome_of(r),
        "final_val_accuracy": r["final_val_accuracy"],
        "late_val_accuracy": late.get("mean"),
        "late_val_accuracy_min": late.get("min"),
        "late_val_accuracy_max": late.get("max"),
        "best_val_accuracy": best.get("accuracy"),
        "best_val_accuracy_step": best.get("step"),
        "precise_bn_final_val_accuracy": precise.get("final_val_accuracy"),
        "precise_bn_late_val_accuracy": (precise.get("late_val_accuracy") or {}).get("mean"),
        "batch_stats_final_val_accuracy": batch.get("final_val_accuracy"),
        "batch_stats_late_val_accuracy": (batch.get("late_val_accuracy") or {}).get("mean"),
        "batch_size_curve_good_from": (r.get("batch_size_curve") or {}).get("good_from"),
        "top_class_share": r.get("top_class_share"),
        "last_layer_inactive_fraction": inactive_fraction(r.get("diagnostics") or {}),
        "last_layer_effective_lr": (r.get("diagnostics") or {}).get("effective_lr"),
        **{f"last_layer_{q}": (r.get("covariate_shift") or {}).get(q) for q in SHIFT_FIGURES},
        "test_accuracy": r["test_accuracy"],
        "single_sample_inference": r["single_sample"]["inference"],
        "single_sample_training": r["single_sample"]["training"],
        "diverged": r["diverged"],
        "diverged_at_step": r["diverged_at_step"],
        "steps_per_second": r["steps_per_second"],
    }


CELL_FIGURES = list(
    _cell_figures(
        {
            "final_val_accuracy": 0,
            "test_accuracy": 0,
            "single_sample": {"inference": 0, "training": 0},
            "diverged": False,
            "diverged_at_step": None,
            "steps_per_second": None,
        }
    )
)


def arm_column(arm: str, figure: str) -> str:
    """summary.csv's column of one arm's figure, `with_bn/late_val_accuracy`: as weights.npz names an
    arm's arrays. An arm's name never holds '/', so no two columns share a name (with `_`, arms
    `x` and `x_precise_bn` both wrote `x_precise_bn_final_val_accuracy`)."""
    return f"{arm}/{figure}"


def summary_columns(manifest: dict, names: list[str] | None = None) -> list[str]:
    """summary.csv's columns: the cell, its grid point and seed, each figure of each arm (default:
    the lesson's pair)."""
    names = names or arms.LESSON_NAMES
    columns = ["cell", "grid_point"]
    for axis in manifest["axes"]:
        columns.append(axis["key"])
        if axis["labels"]:
            columns.append(f"{axis['key']}_value")
    columns.append("seed")
    for metric in CELL_FIGURES:
        columns += [arm_column(v, metric) for v in names]
    for metric in POINT_INTERVALS:
        columns += [arm_column(v, metric) for v in (names if metric.startswith("point_success") else names[1:])]
    return columns + ["wall_seconds"]


# summary.csv's columns of the grid point a cell belongs to (the same on each of its seeds): the
# 95% intervals of each arm's success rate (Wilson) and of its uplift over the first arm (paired t).
POINT_INTERVALS = ("point_success_ci_low", "point_success_ci_high", "point_uplift_ci_low", "point_uplift_ci_high")


def _point_intervals(point: Point, names: list[str], threshold: float) -> dict:
    found = {}
    for v in names:
        success = intervals.wilson(point.successes(v, threshold), len(point.summaries)) or (None, None)
        found.update(zip((arm_column(v, m) for m in POINT_INTERVALS[:2]), success))
    for v in names[1:]:
        uplift = intervals.t_interval(point.uplifts(v, names[0])) or (None, None)
        found.update(zip((arm_column(v, m) for m in POINT_INTERVALS[2:]), uplift))
    return found


def summary_rows(results: SweepResults, threshold: float = 0.9) -> list[dict]:
    """One row per finished cell (grid point and seed), in the sweep's order; with its grid
    point's intervals (successes: late accuracy >= threshold)."""
    rows, names = [], list(results.styles)
    points = {p.name: _point_intervals(p, names, threshold) for p in results.points}
    for cell in results.manifest["cells"]:
        s = results.summaries.get(cell["name"])
        if s is None:
            continue
        row = {"cell": cell["name"], "grid_point": cell["point"], "seed": cell["seed"], **points[cell["point"]]}
        row["wall_seconds"] = s["wall_seconds"]
        for axis, i in zip(results.manifest["axes"], cell["indices"]):
            if axis["labels"]:
                row[axis["key"]], row[f"{axis['key']}_value"] = axis["labels"][i], axis["values"][i]
            else:
                row[axis["key"]] = axis["values"][i]
        for v in s["variants"]:
            row.update({arm_column(v, k): value for k, value in _cell_figures(s["variants"][v]).items()})
        rows.append(row)
    return rows


def other_text(point: Point, variant: str, statistics: str) -> str:
    """An arm's accuracy with exact ("precise_bn") or batch ("batch_stats") statistics, over seeds."""
    return mean_text(point.accuracies(variant, statistics))


def table(results: SweepResults, threshold: float) -> list[list[str]]:
    """report.md's table: a header row, then one row per grid point. Per arm (its label, or its
    short name in the uplift): outcomes, accuracy, with exact statistics (arms with population
    statistics), the uplift over the first arm, successes, and inside the network."""
    keys = [a["key"] for a in results.manifest["axes"]]
    figure = results.points[0].figure if results.points else "late"
    styles = results.styles
    names = list(styles)
    reference, others = names_of(styles)
    population = [v for v in names if arms.uses_population_statistics(styles[v]["normalizer"])]
    normalized = [v for v in names if styles[v]["normalizer"]]
    label = {v: styles[v]["label"] for v in names}
    header = (
        keys
        + ["seeds"]
        + [f"outcomes {label[v]}" for v in names]
        + [f"{figure} val acc {label[v]}" for v in names]
        + [f"{figure} val acc {label[v]}, {o.short}" for o in schema.OTHER_STATISTICS.values() for v in population]
        + [f"{styles[v]['short']} uplift" for v in others]
        + [f"{styles[v]['short']} uplift, 95% CI (paired t)" for v in others]
        + [f"success {label[v]}" for v in names]
        + [f"success {label[v]}, 95% CI (Wilson)" for v in names]
    )
    inside = measured_inside(results)
    if inside:  # diagnostics were on: what happened inside, at the end of training
        header += [f"dead/saturated, last layer, {label[v]}" for v in names]
        header += [f"{styles[v]['short']} effective lr, last layer" for v in normalized]
    shifts = measured_inside(results, "covariate_shift")
    if shifts:
        header += [f"band motion / width {label[v]}" for v in names]
        header += [f"{styles[v]['short']} band motion / width − {styles[reference]['short']}, 95% CI" for v in others]
        for shown in ("‖G − G′‖/‖G‖", "cos(G, G′)"):
            header += [f"{shown} {label[v]}" for v in names]
            header += [f"{styles[v]['short']} {shown} − {styles[reference]['short']}, 95% CI" for v in others]
    rows = [header]
    for p in results.points:
        done = len(p.summaries)
        row = [p.grid[k] for k in keys] + [f"{done}/{p.planned}"]
        row += [outcome_text(p, v) for v in names]
        row += [accuracy_text(p, v) for v in names]
        row += [other_text(p, v, o.section) for o in schema.OTHER_STATISTICS.values() for v in population]
        row += [mean_text(p.uplifts(v, reference), signed=True) if done else "—" for v in others]
        row += [intervals.accuracy_uplift_text(p.uplifts(v, reference)) for v in others]
        row += [f"{p.successes(v, threshold)}/{done}" if done else "—" for v in names]
        row += [intervals.rate_text(p.successes(v, threshold), done) for v in names]
        if inside:
            row += [mean_text(p.inside(v, "inactive"), digits=".2f") for v in names]
            row += [mean_text(p.inside(v, "effective_lr"), digits=".1e") for v in normalized]
        if shifts:
            for quantity, digits in (("band_motion_relative", ".3f"), ("ics_relative", ".3f"), ("ics_cosine", ".2f")):
                by_seed = {v: _shift_by_seed(p, v, quantity) for v in names}
                row += [mean_text([m for m in by_seed[v] if m is not None], digits=digits) for v in names]
                row += [
                    intervals.uplift_text(
                        [m - base for base, m in zip(by_seed[reference], by_seed[v]) if None not in (base, m)], digits
                    )
                    for v in others
                ]
        rows.append(row)
    return rows


def _shift_by_seed(point: Point, variant: str, quantity: str) -> list[float | None]:
    """A covariate-shift figure seed by seed (None: diverged or not measured), for paired differences."""
    return [
        None
        if s["variants"][variant]["diverged"]
        else (s["variants"][variant].get("covariate_shift") or {}).get(quantity)
        for s in point.summaries
    ]


def without_empty_columns(rows: list[list[str]]) -> list[list[str]]:
    """The table without the columns that hold nothing but "—" (a mode or a probe that was off)."""
    keep = [i for i in range(len(rows[0])) if len(rows) == 1 or any(r[i] != "—" for r in rows[1:])]
    return [[r[i] for i in keep] for r in rows]


# The printed table fits a terminal this wide; the whole one is report.md's (and --wide's).
NARROW = 100


def narrow_table(results: SweepResults, threshold: float) -> list[list[str]]:
    """What `bnlab sweep` prints by default: per grid point its seeds, each arm's accuracy (by its
    short name) and each uplift's 95% interval; where that is wider than NARROW, the spread (± sd)
    is left out, then the intervals, then both."""
    keys = [a["key"] for a in results.manifest["axes"]]
    styles = results.styles
    reference, others = names_of(styles)
    short = {v: styles[v]["short"] for v in styles}
    figure = results.points[0].figure if results.points else "late"
    for with_intervals, with_spread in ((True, True), (True, False), (False, True), (False, False)):
        header = [*keys, "seeds", *(f"{figure} {short[v]}" for v in styles)]
        header += [f"{short[v]} − {short[reference]}, 95% CI" for v in others] if with_intervals else []
        rows = [header]
        for p in results.points:
            row = [p.grid[k] for k in keys] + [f"{len(p.summaries)}/{p.planned}"]
            row += [accuracy_text(p, v) if with_spread else re.sub(r" ± \S+", "", accuracy_text(p, v)) for v in styles]
            if with_intervals:
                row += [intervals.accuracy_uplift_text(p.uplifts(v, reference)) for v in others]
            rows.append(row)
        if max(len(line) for line in markdown_table(rows).splitlines()) <= NARROW:
            break
    return rows


# The widest a table's cell gets (a grid value of 64 units, the longest label with its column's
# words): beyond, it is cut.
MAX_CELL = 300


def markdown_table(rows: list[list[str]]) -> str:
    """Aligned, so that it reads as well in a terminal as rendered. Each cell is one bounded line,
    with what a terminal would obey escaped and `|` (a column break) escaped."""
    rows = [[printable(str(cell), MAX_CELL).replace("|", "\\|") for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule] + [line(r) for r in rows[1:]])


def names_of(styles: dict) -> tuple[str, list[str]]:
    """The first arm (every uplift's reference) and the others."""
    names = list(styles)
    return names[0], names[1:]
