"""The report of a sweep: summary.csv, report.md, heatmap.png, curves.png, mechanism.png in its directory.

It writes from the sweep's results as bn_lab.report.sweep_results reads them (only files: it works on a
partial sweep, and never imports TensorFlow).
"""

from __future__ import annotations

import json
from pathlib import Path

from bn_lab.config import arms
from bn_lab.config.user_text import counted, printable
from bn_lab.disk import files
from bn_lab.report import intervals, lr_threshold, outcome, sweep_mechanism, sweep_table
from bn_lab.report import sweep_figures as report_figures
from bn_lab.report.sweep_results import (
    SweepResults,
    check_options,
    collect,
    figure_of,
    measured_inside,
    outcome_of,
)
from bn_lab.store import rundir, schema

FIGURES = outcome.FIGURES
CONVENTIONS = """\
How to read it: each accuracy is a {figure}, as mean ± sample standard deviation over the seeds.
Outcomes: a network *diverged* when its loss became NaN/inf: it has no accuracy (NaN weights),
so it is left out of the mean and counted (the lesson's TF1 code printed {tf1} for it: the
argmax of NaN logits is class 0, and that is class 0's share of the validation images these cells
used; on MNIST's whole validation split of 5,000 it is 0.0958, `data.val_limit` changes it). A network
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
MECHANISM_TEXT = {
    True: "`mechanism.png` draws both over training for the relu cells with a bad init.",
    False: "There is no relu cell with a bad init here: no `mechanism.png`.",
}


def write_report(sweep_dir: str | Path, threshold: float = 0.9, figure: str = "late", wide: bool = False) -> str:
    """Writes summary.csv, report.md, heatmap.png, curves.png and mechanism.png (relu bad-init cells
    with diagnostics); returns the text to print: the table narrowed to NARROW columns
    (sweep_table.narrow_table), or with wide, report.md's whole table.

    figure: the accuracy aggregated over seeds, one of FIGURES (default: the late-window mean).
    """
    check_options(threshold, figure)
    sweep_dir = Path(sweep_dir)
    results = collect(sweep_dir, figure)
    manifest = results.manifest
    files.write_csv(
        sweep_dir / rundir.SUMMARY_CSV,
        sweep_table.summary_rows(results, threshold),
        sweep_table.summary_columns(manifest, list(results.styles)),
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
    table_text = sweep_table.markdown_table(sweep_table.without_empty_columns(sweep_table.table(results, threshold)))
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
    drawn = sweep_mechanism.mechanism(results, sweep_dir / rundir.MECHANISM)
    along = report_figures.along_axis(results, sweep_dir / rundir.ALONG_AXIS)
    if measured_inside(results):
        lines += [f"{INSIDE} {MECHANISM_TEXT[drawn]}", ""]
    if measured_inside(results, "covariate_shift"):
        lines += [SHIFT, ""]
    threshold_text = None
    if lr_threshold.applies(manifest):
        threshold_text = sweep_table.markdown_table(
            lr_threshold.table(manifest, results.points, results.styles, threshold)
        )
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
        (heatmap, f"`{rundir.HEATMAP}` (per grid point, each arm's {FIGURES[figure]}, its mean over seeds)"),
        (curves, f"`{rundir.CURVES}` (validation curves, every seed)"),
        (drawn, f"`{rundir.MECHANISM}` (inside the relu bad-init cells)"),
        (along, f"`{rundir.ALONG_AXIS}` (each arm against the numeric axis, each evaluation mode)"),
    ]
    shown = [text for was_drawn, text in figures if was_drawn]
    lines += [f"Figures: {', '.join(shown) or 'none'}; per cell: `<cell>/{rundir.ACCURACY_PLOT}`.", ""]
    files.write_text(sweep_dir / rundir.REPORT, "\n".join(lines))

    narrow = sweep_table.without_empty_columns(sweep_table.narrow_table(results, threshold))
    shown = table_text if wide else sweep_table.markdown_table(narrow)
    printed = [f"sweep {manifest['name']}: {status}", shown]
    printed += [f"learning-rate threshold:\n{threshold_text}"] if threshold_text else []
    printed += [n for n in notes if n]
    written = [rundir.SUMMARY_CSV] + [rundir.HEATMAP] * heatmap + [rundir.CURVES] * curves
    written += [rundir.MECHANISM] * drawn + [rundir.ALONG_AXIS] * along
    printed.append(f"report: {sweep_dir}/{rundir.REPORT} ({', '.join(written)})")
    printed.append(f"every cell's curves and hyperparameters in TensorBoard: tensorboard --logdir {sweep_dir}")
    return "\n".join(printed)


def _incomplete_notes(results: SweepResults) -> list[str]:
    notes = []
    failed = [n for n in results.missing if n in results.failed]
    missing = [n for n in results.missing if n not in results.failed]
    if missing:
        notes += [f"Missing: {_cells(len(missing))} not run or not finished: {rundir.listed(missing, 10)}", ""]
    if failed:
        notes += [f"Failed: {_cells(len(failed))}, errors with tracebacks in failed.json:"]
        notes += _itemized({n: results.failed[n] for n in failed}, "every one in failed.json") + [""]
    if results.damaged:
        notes += [
            f"Damaged: {_cells(len(results.damaged))} left out, whose files do not read back (resuming the sweep reruns them):"
        ]
        notes += _itemized(results.damaged, "`bnlab sweep --dry-run` names each") + [""]
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
    return counted(n, "cell")


# Cells listed one a line with their problem; the others are counted (a report stays readable
# when thousands of cells failed).
ITEMIZED = 10


def _itemized(problems: dict[str, str], all_of_them: str) -> list[str]:
    lines = [f"- {name}: {problem}" for name, problem in list(problems.items())[:ITEMIZED]]
    if len(problems) > ITEMIZED:
        lines.append(f"- and {counted(len(problems) - ITEMIZED, 'more cell')} ({all_of_them})")
    return lines


def report_table(sweep_dir: str | Path, threshold: float = 0.9, figure: str = "late", wide: bool = False) -> str:
    """The table `bnlab sweep` and `bnlab report` print (its status line first), from the cells'
    files alone: nothing is written (`bnlab show`)."""
    check_options(threshold, figure)
    results = collect(sweep_dir, figure)
    status = f"{len(results.summaries)} of {len(results.manifest['cells'])} cells finished"
    rows = sweep_table.table(results, threshold) if wide else sweep_table.narrow_table(results, threshold)
    table_text = sweep_table.markdown_table(sweep_table.without_empty_columns(rows))
    return "\n".join(
        [f"sweep {results.manifest['name']}: {status}", table_text, *filter(None, _incomplete_notes(results))]
    )


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
        sweep_table.markdown_table(sweep_table.without_empty_columns(rows)),
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
    reference, others = sweep_table.names_of(styles)
    if others:
        uplifts = {v: [d for p in results.points for d in p.uplifts(v, reference)] for v in others}
        lines.append(
            f"paired uplift over {styles[reference]['label']}, late accuracy (95% CI, Student's t on the "
            "seed-by-seed differences): "
            + "; ".join(
                f"{styles[v]['label']} {sweep_table.mean_text(uplifts[v], signed=True)} ({intervals.accuracy_uplift_text(uplifts[v])})"
                for v in others
            )
        )
    return "\n".join(lines)
