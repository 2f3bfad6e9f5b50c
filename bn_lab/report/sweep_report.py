"""The report of a sweep: summary.csv, report.md, heatmap.png, curves.png, mechanism.png in its directory.

It writes from the sweep's results as bn_lab.report.sweep_results reads them (only files: it works on a
partial sweep, and never imports TensorFlow).
"""

from __future__ import annotations

import json
from pathlib import Path

from bn_lab.config import arms
from bn_lab.config.user_text import printable
from bn_lab.disk import files
from bn_lab.report import intervals, lr_threshold, outcome
from bn_lab.report import sweep_figures as report_figures
from bn_lab.report.sweep_results import (
    Point,
    SweepResults,
    check_options,
    collect,
    figure_of,
    inactive_fraction,
    measured_inside,
    outcome_of,
)
from bn_lab.store import rundir, schema

FIGURES = outcome.FIGURES
CONVENTIONS = """\
How to read it: each accuracy is a {figure}, as mean ± sample standard deviation over the seeds.
Outcomes: a network *diverged* when its loss became NaN/inf: it has no accuracy (NaN weights),
so it is left out of the mean and counted (the lesson's TF1 code printed {tf1} for it: the
argmax of NaN logits is class 0, that class's share of the validation images). A network
*collapsed* when at least {collapse:.0%} of the validation images get the same class: its accuracy is
about that class's share (~0.10), a real result of training, so it is in the mean. The BN
uplift is the mean ± std of the paired difference with BN − without BN (same initial weights,
same batches) over the seeds where neither network diverged (with more arms: each arm's uplift
over the first arm's). An arm with population statistics (BN) is evaluated two more ways: with exact
population statistics (*exact stats*: their true average over fixed training batches) and with
*batch stats*, in training mode on validation batches of the training batch size, normalized as in
training (groups of `group_size` included). Success counts the seeds whose
{figure} reached {threshold:g}; a diverged network is a failure. `seeds` is finished/planned.
The 95% confidence intervals: of a success rate, Wilson's score interval (it stays in [0, 1] and
near 95% coverage with few seeds; 4/5 is 0.38-0.96); of an uplift, Student's t on the paired
differences (a bootstrap of five differences is too narrow)."""
INSIDE = """Inside the network (diagnostics on): at the last evaluation, the share of the last hidden layer's
units that are dead (relu: input never positive on the probe images) or saturated (sigmoid:
|input| > 4 on 95% of them), and each normalized arm's effective learning rate of that layer (lr/‖w‖² with SGD,
lr/‖w‖ with Adam, w the part of the kernel its normalizer makes scale-invariant; mean over them): what a
step of the optimizer means to a scale-invariant layer.
Over the seeds where the network did not diverge."""
SHIFT = """Covariate shift (diagnostics.ics; bn_lab.probes.ics), of the last hidden layer over training: its band
motion is how far one unit's input distribution in training mode (15th, 50th, 85th percentiles on
the probe images, the noise of noisy BN included) moves between consecutive evaluations, relative to
the band's mean width (p85 − p15: scale-free, so that a normalized arm and a plain one compare; the raw
motion, in the unit's own units, in summary.csv), as mean ± std over the seeds with the paired
difference to the first arm and its 95% t interval; ‖G − G′‖/‖G‖ and cos(G, G′) compare that
layer's gradient before and after the layers below it take their update on the same batch
(Santurkar et al. 2018, Definition 2.1; 0 and 1: the update below leaves the gradient as it was),
with the paired difference to the first arm."""
SHIFT_FIGURES = ("band_motion", "band_motion_relative", "ics_l2", "ics_relative", "ics_cosine")
MECHANISM_TEXT = {
    True: "`mechanism.png` draws both over training for the relu cells with a bad init.",
    False: "There is no relu cell with a bad init here: no `mechanism.png`.",
}


def _mean_text(values: list[float], signed: bool = False, digits: str = ".4f") -> str:
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
    return _mean_text(point.accuracies(variant)) + (f" ({diverged}/{done} diverged)" if diverged else "")


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
    return _mean_text(point.accuracies(variant, statistics))


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
        row += [_mean_text(p.uplifts(v, reference), signed=True) if done else "—" for v in others]
        row += [intervals.uplift_text(p.uplifts(v, reference)) for v in others]
        row += [f"{p.successes(v, threshold)}/{done}" if done else "—" for v in names]
        row += [intervals.rate_text(p.successes(v, threshold), done) for v in names]
        if inside:
            row += [_mean_text(p.inside(v, "inactive"), digits=".2f") for v in names]
            row += [_mean_text(p.inside(v, "effective_lr"), digits=".1e") for v in normalized]
        if shifts:
            for quantity, digits in (("band_motion_relative", ".3f"), ("ics_relative", ".3f"), ("ics_cosine", ".2f")):
                by_seed = {v: _shift_by_seed(p, v, quantity) for v in names}
                row += [_mean_text([m for m in by_seed[v] if m is not None], digits=digits) for v in names]
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


def write_report(sweep_dir: str | Path, threshold: float = 0.9, figure: str = "late") -> str:
    """Writes summary.csv, report.md, heatmap.png, curves.png and mechanism.png (relu bad-init cells
    with diagnostics); returns the text to print.

    figure: the accuracy aggregated over seeds, one of FIGURES (default: the late-window mean).
    """
    check_options(threshold, figure)
    sweep_dir = Path(sweep_dir)
    results = collect(sweep_dir, figure)
    manifest = results.manifest
    files.write_csv(
        sweep_dir / rundir.SUMMARY_CSV,
        summary_rows(results, threshold),
        summary_columns(manifest, list(results.styles)),
    )

    cells = manifest["cells"]
    axes = " × ".join(f"{a['key']} ({len(a['values'])})" for a in manifest["axes"])
    status = f"{len(results.summaries)} of {len(cells)} cells finished"
    lines = [
        f"# Sweep `{manifest['name']}`",
        "",
        f"Base config `{printable(manifest['base'])}`; grid {axes}; seeds {seeds_text(manifest['seeds'])}; {status}.",
    ]
    if manifest.get("set"):
        settings = ", ".join(f"`{k}={printable(json.dumps(v), 80)}`" for k, v in manifest["set"].items())
        lines.append(f"Set on every cell: {settings}.")
    table_text = markdown_table(table(results, threshold))
    tf1 = next(
        (s["tf1_diverged_val_accuracy"] for s in results.summaries.values() if "tf1_diverged_val_accuracy" in s), None
    )
    conventions = CONVENTIONS.format(
        figure=FIGURES[figure],
        threshold=threshold,
        collapse=outcome.COLLAPSE_SHARE,
        tf1="the share of class 0" if tf1 is None else f"{tf1:.4f}",
    )
    lines += ["", table_text, "", conventions, ""]
    drawn = report_figures.mechanism(results, sweep_dir / rundir.MECHANISM)
    along = report_figures.along_axis(results, sweep_dir / rundir.ALONG_AXIS)
    if measured_inside(results):
        lines += [f"{INSIDE} {MECHANISM_TEXT[drawn]}", ""]
    if measured_inside(results, "covariate_shift"):
        lines += [SHIFT, ""]
    threshold_text = None
    if lr_threshold.applies(manifest):
        threshold_text = markdown_table(lr_threshold.table(manifest, results.points, results.styles, threshold))
        lines += [
            "## Learning-rate threshold",
            "",
            threshold_text,
            "",
            lr_threshold.TEXT.format(figure=FIGURES[figure], threshold=threshold),
            "",
        ]
    notes = _incomplete_notes(results)
    lines += notes
    heatmap = report_figures.heatmap(results, sweep_dir / rundir.HEATMAP)
    curves = report_figures.curves(results, sweep_dir / rundir.CURVES)
    figures = [
        (heatmap, f"`{rundir.HEATMAP}` (mean {FIGURES[figure]} per grid point)"),
        (curves, f"`{rundir.CURVES}` (validation curves, every seed)"),
        (drawn, f"`{rundir.MECHANISM}` (inside the relu bad-init cells)"),
        (along, f"`{rundir.ALONG_AXIS}` (each arm against the numeric axis, each evaluation mode)"),
    ]
    shown = [text for was_drawn, text in figures if was_drawn]
    lines += [f"Figures: {', '.join(shown) or 'none'}; per cell: `<cell>/{rundir.ACCURACY_PLOT}`.", ""]
    files.write_text(sweep_dir / rundir.REPORT, "\n".join(lines))

    printed = [f"sweep {manifest['name']}: {status}", table_text]
    printed += [f"learning-rate threshold:\n{threshold_text}"] if threshold_text else []
    printed += [n for n in notes if n]
    written = [rundir.SUMMARY_CSV] + [rundir.HEATMAP] * heatmap + [rundir.CURVES] * curves
    written += [rundir.MECHANISM] * drawn + [rundir.ALONG_AXIS] * along
    printed.append(f"report: {sweep_dir}/{rundir.REPORT} ({', '.join(written)})")
    return "\n".join(printed)


def _incomplete_notes(results: SweepResults) -> list[str]:
    notes = []
    failed = [n for n in results.missing if n in results.failed]
    missing = [n for n in results.missing if n not in results.failed]
    if missing:
        notes += [f"Missing: {_cells(len(missing))} not run or not finished: {rundir.listed(missing, 10)}", ""]
    if failed:
        notes += [f"Failed: {_cells(len(failed))}, errors with tracebacks in failed.json:"]
        notes += [f"- {n}: {results.failed[n]}" for n in failed] + [""]
    if results.damaged:
        notes += [
            f"Damaged: {_cells(len(results.damaged))} left out, whose files do not read back (resuming the sweep reruns them):"
        ]
        notes += [f"- {n}: {problem}" for n, problem in results.damaged.items()] + [""]
    if results.stale:
        notes += [
            f"Left out: {_cells(len(results.stale))} finished with a config other than this sweep's "
            f"(rerun the sweep with --force): {rundir.listed(results.stale, 10)}",
            "",
        ]
    return notes


def seeds_text(seeds: list[int], limit: int = 120) -> str:
    """A sweep's seeds on one bounded line: runs of consecutive seeds as ranges (0-9999), cut."""
    runs = []
    for seed in seeds:
        if runs and seed == runs[-1][1] + 1:
            runs[-1][1] = seed
        else:
            runs.append([seed, seed])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return text if len(text) <= limit else f"{text[: text.rfind(', ', 0, limit)]}, … ({len(seeds):,} seeds)"


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n:,} cells"


def seeds_table(sweep_dir: str | Path, threshold: float = 0.9) -> str:
    """What `bnlab run --seeds` prints: per seed each arm's outcome and late accuracy, then the counts."""
    results = collect(sweep_dir, "late")
    styles = results.styles
    population = [v for v in styles if arms.uses_population_statistics(styles[v]["normalizer"])]
    names = {n: cell for n, cell in ((c["name"], c) for c in results.manifest["cells"])}
    header = [
        "seed",
        *(s["label"] for s in styles.values()),
        *(f"{styles[v]['label']}, {o.short}" for o in schema.OTHER_STATISTICS.values() for v in population),
    ]
    rows = [header]
    for name, s in results.summaries.items():
        row = [str(names[name]["seed"])]
        for v in styles:
            r = s["variants"][v]
            late = figure_of(r, "late")
            row.append(outcome_of(r) + ("" if late is None else f" {late:.4f}"))
        for o in schema.OTHER_STATISTICS.values():
            for v in population:
                other = ((s["variants"][v].get(o.section) or {}).get("late_val_accuracy") or {}).get("mean")
                row.append("—" if other is None else f"{other:.4f}")
        rows.append(row)
    done = len(results.summaries)
    learned = {
        v: sum(outcome_of(s["variants"][v]) == schema.LEARNED for s in results.summaries.values()) for v in styles
    }
    reached = {v: sum(p.successes(v, threshold) for p in results.points) for v in styles}
    lines = [
        f"{results.manifest['name']}: {done} of {len(names)} seeds finished; accuracies are late validation accuracies "
        "(mean over the last 10% of training)",
        markdown_table(rows),
        "learned: "
        + ", ".join(f"{styles[v]['label']} {learned[v]}/{done}" for v in styles)
        + f"; late accuracy >= {threshold:g}: "
        + ", ".join(f"{styles[v]['label']} {reached[v]}/{done}" for v in styles),
        "95% CI of each rate (Wilson): "
        + "; ".join(
            f"{styles[v]['label']} learned {intervals.rate_text(learned[v], done)}, "
            f">= {threshold:g} {intervals.rate_text(reached[v], done)}"
            for v in styles
        ),
    ]
    reference, others = names_of(styles)
    if others:
        uplifts = {v: [d for p in results.points for d in p.uplifts(v, reference)] for v in others}
        lines.append(
            f"paired uplift over {styles[reference]['label']}, late accuracy (95% CI, Student's t on the "
            "seed-by-seed differences): "
            + "; ".join(
                f"{styles[v]['label']} {_mean_text(uplifts[v], signed=True)} ({intervals.uplift_text(uplifts[v])})"
                for v in others
            )
        )
    return "\n".join(lines)


def names_of(styles: dict) -> tuple[str, list[str]]:
    """The first arm (every uplift's reference) and the others."""
    names = list(styles)
    return names[0], names[1:]
