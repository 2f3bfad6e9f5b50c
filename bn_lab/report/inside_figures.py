"""A run's figures of what happens inside its networks, drawn from diagnostics.csv's rows:
diagnostics.png, landscape.png, the paper's Fig. 1 (paper_fig1.png), covariate_shift.png. As
bn_lab.report.plots' figures, plain matplotlib Figures, one column or line per arm."""

from __future__ import annotations

import math
import textwrap

from bn_lab.config import arms
from bn_lab.report.plots import new_figure
from bn_lab.store import schema

DIAGNOSTIC_ROWS = (  # (title, quantity, band's low/high quantities or None, log scale)
    ("per-unit mean of the activation input (mean ± spread over units)", "unit_mean_mean", "unit_mean_std", False),
    ("per-unit std of the activation input (mean ± spread over units)", "unit_std_mean", "unit_std_std", False),
    ("dead (relu) / saturated (sigmoid) units, fraction", "inactive", None, False),
    ("kernel: mean column norm ‖w‖", "kernel_norm", None, True),
    (
        "effective learning rate (lr/‖w‖², Adam: lr/‖w‖)",
        "effective_lr",
        None,
        True,
    ),
    ("gradient norm of the kernel, last training step", "gradient_norm", None, True),
    # Opt-in (diagnostics.ics, bn_lab.probes.ics): drawn only when measured.
    ("internal covariate shift ‖G − G′‖ (layer 1: 0, nothing below)", "ics_l2", None, True),
    ("internal covariate shift, relative: ‖G − G′‖ / ‖G‖", "ics_relative", None, True),
    ("internal covariate shift: cos(G, G′)", "ics_cosine", None, False),
    # Opt-in (diagnostics.residual, bn_lab.probes.branch_variance): at each block's branch-end layer.
    ("residual branch: share of its block's output variance (training mode)", "branch_share", None, False),
)


OPT_IN = ("ics_l2", "ics_relative", "ics_cosine", "branch_share")


def indexed(rows) -> dict:
    """diagnostics.csv's rows (dicts, any iterable) as {(variant, layer, quantity): (steps, values)}:
    one pass over the rows, not one per series a figure draws."""
    index = {}
    for r in rows:
        steps, values = index.setdefault((r["variant"], str(r["layer"]), r["quantity"]), ([], []))
        steps.append(int(r["step"]))
        values.append(float(r["value"]))
    return index


def series(index: dict, variant: str, layer, quantity: str) -> tuple[list[int], list[float]]:
    return index.get((variant, str(layer), quantity), ([], []))


def _inactive_name(rows: list[dict]) -> str | None:
    names = {r["quantity"] for r in rows} & {"dead_fraction", "saturated_fraction"}
    return next(iter(names), None)


def percentile_band(ax, index: dict, variant: str, layer, color: str, quantities=schema.UNIT_PERCENTILES) -> None:
    """The paper's Fig. 1 (b, c): one unit's 15th-85th percentile band and its median over training."""
    (steps, p15), (_, p50), (_, p85) = (series(index, variant, layer, q) for q in quantities)
    if len(steps) == 1:  # a network that diverged before its second evaluation: a band of one point
        ax.vlines(steps, p15, p85, color=color, alpha=0.4, linewidth=4, label="15th-85th percentile")
    elif steps:
        ax.fill_between(steps, p15, p85, color=color, alpha=0.25, linewidth=0, label="15th-85th percentile")
    if steps:
        ax.plot(steps, p50, color=color, linewidth=1.2, marker=_lone_point(steps), label="median")


def _step_zero_off_the_scale(ax, points) -> None:
    """A linear panel scaled to its values after step 0 when step 0's lie far outside them.

    At a bad init the untrained network's activation inputs reach ~1e4, and so do the BN
    network's at step 0: inference mode normalises with the population statistics, which
    start at mean 0 and variance 1. Drawn to scale, that one point flattens every later one
    into a line at 0. points: (step, value) of everything the panel draws.
    """
    later = [v for s, v in points if s > 0 and math.isfinite(v)]
    first = [v for s, v in points if s == 0 and math.isfinite(v)]
    if len(later) < 2 or not first:
        return
    size = max(abs(v) for v in later)
    if max(abs(v) for v in first) <= 10 * size:  # on the later values' scale (a fraction from 0 to 1 is)
        return
    low, high = min(later), max(later)
    span = max(high - low, 0.1 * size, 1e-9)
    ax.set_ylim(low - 0.08 * span, high + 0.08 * span)
    ax.text(
        0.01,
        0.03,
        f"step 0 off the scale ({min(first):.3g} to {max(first):.3g})",
        transform=ax.transAxes,
        fontsize=7,
        va="bottom",
        color="dimgrey",
    )


def _lone_point(steps) -> str | None:
    """A marker for a series of one point, which a line alone would not show."""
    return "o" if len(steps) == 1 else None


def diagnostics_figure(
    rows: list[dict], layers: int, title: str, unit: int, diverged_at: dict | None = None, *, styles: dict | None = None
):
    """diagnostics.png: the last hidden layer's percentile bands, one column per arm, then one row
    per quantity across layers (the effective learning rate only for the arms that have one, across
    the whole row when one arm has it); the layers' colours are keyed once, under the title."""
    styles = styles or arms.LESSON_STYLES
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    inactive = _inactive_name(rows)
    index = indexed(rows)
    measured = {quantity for _, _, quantity in index}
    quantity_rows = [
        r for r in DIAGNOSTIC_ROWS if (r[1] != "inactive" or inactive) and (r[1] not in OPT_IN or r[1] in measured)
    ]
    title_lines = title.count("\n") + 1  # printed.title: one or two
    height = 2.3 * (1 + len(quantity_rows)) + 0.75 + 0.25 * title_lines
    # Fixed margins, not layout="constrained": on these ~20 axes it took most of the figure's
    # time, which counts against the diagnostics' cost (docs/performance.md). In inches: the
    # title's lines, the layers' key under them, then the panels.
    key_top = 0.17 + 0.25 * title_lines
    columns = max(len(styles), 1)
    figure = new_figure(figsize=(5.5 * max(columns, 2), height))
    figure.subplots_adjust(
        left=0.08, right=0.98, bottom=0.45 / height, top=1 - (key_top + 0.58) / height, hspace=0.45, wspace=0.22
    )
    grid = figure.add_gridspec(1 + len(quantity_rows), columns)
    with_effective_lr = [v for v in styles if series(index, v, 1, "effective_lr")[0]]
    layer_colours = colormaps["viridis"].resampled(max(layers, 2))
    first = None

    def panel(row: int, column, variant: str, text: str):
        nonlocal first
        ax = figure.add_subplot(grid[row, column], sharex=first)
        first = first or ax
        # y given: matplotlib's automatic title placement measures every axis below it (slow).
        # Two lines where one would run into the next panel's title (a long arm label, 4 columns).
        ax.set_title(textwrap.fill(f"{styles[variant]['label']}: {text}", 80), fontsize=9, y=1.0)
        if diverged_at and diverged_at.get(variant) is not None:
            ax.axvline(diverged_at[variant], color="grey", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
        if row < len(quantity_rows):
            ax.tick_params(labelbottom=False)
        else:
            ax.set_xlabel("training step")
        return ax

    for column, (variant, style) in enumerate(styles.items()):
        ax = panel(0, column, variant, f"layer {layers}, unit {unit}: input to the activation")
        percentile_band(ax, index, variant, layers, style["color"])
        if ax.lines:
            ax.legend(fontsize=7, loc="upper right")
        _step_zero_off_the_scale(
            ax, [p for q in schema.UNIT_PERCENTILES for p in zip(*series(index, variant, layers, q))]
        )
    for r, (label, quantity, spread, log) in enumerate(quantity_rows, start=1):
        name = inactive if quantity == "inactive" else quantity
        for column, variant in enumerate(styles):
            if quantity == "effective_lr" and variant not in with_effective_lr:
                continue
            ax = panel(
                r,
                slice(None) if quantity == "effective_lr" and len(with_effective_lr) == 1 else column,
                variant,
                label if quantity != "inactive" else inactive.replace("_", " "),
            )
            drawn = []  # (step, value) of every line and band edge
            for layer in range(1, layers + 1):
                steps, values = series(index, variant, layer, name)
                colour = layer_colours(layer - 1)
                if steps:
                    ax.plot(steps, values, color=colour, linewidth=1, marker=_lone_point(steps), markersize=4)
                    drawn += zip(steps, values)
                if spread and len(steps) > 1:
                    _, width = series(index, variant, layer, spread)
                    low, high = [v - w for v, w in zip(values, width)], [v + w for v, w in zip(values, width)]
                    ax.fill_between(steps, low, high, color=colour, alpha=0.15, linewidth=0)
                    drawn += [*zip(steps, low), *zip(steps, high)]
            if log and ax.lines:
                ax.set_yscale("log")
            elif not log:
                _step_zero_off_the_scale(ax, drawn)
            if not ax.lines:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
    keyed = (
        range(1, layers + 1) if layers <= 8 else sorted({1, (layers + 1) // 2, layers})
    )  # a deep net: ends and middle
    figure.legend(
        handles=[Line2D([], [], color=layer_colours(k - 1), label=f"layer {k}") for k in keyed],
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - key_top / height),
        ncol=len(keyed),
        fontsize=8,
        frameon=False,
    )
    figure.suptitle(title)
    return figure


def landscape_figure(rows: list[dict], title: str, *, styles: dict | None = None):
    """landscape.png: loss variation, gradient predictiveness, β-smoothness over training, every arm."""
    styles = styles or arms.LESSON_STYLES
    index = indexed(rows)
    figure = new_figure(figsize=(13, 3.8), layout="constrained")
    axes = figure.subplots(1, len(schema.LANDSCAPE_BANDS), squeeze=False)[0]
    labels = {
        "loss_variation": "loss over the step sizes (min-max)",
        "gradient_predictiveness": "gradient change ‖g(w-ηg) - g‖ (min-max)",
        "beta_smoothness": "effective β-smoothness (min-max)",
    }
    for ax, (quantity, (low, high)) in zip(axes, schema.LANDSCAPE_BANDS.items()):
        for variant, style in styles.items():
            steps, lows = series(index, variant, "all", low)
            _, highs = series(index, variant, "all", high)
            if steps:
                ax.fill_between(steps, lows, highs, color=style["color"], alpha=0.3, linewidth=0, label=style["label"])
        ax.set_title(labels[quantity], fontsize=9)
        ax.set_xlabel("training step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(title)
    return figure


def paper_fig1_figure(
    metric_rows: list[dict],
    diagnostic_rows: list[dict],
    layers: int,
    unit: int,
    title: str,
    *,
    styles: dict | None = None,
):
    """The paper's Fig. 1: (a) test accuracy vs step, then one unit's percentiles, one panel per arm
    ((b) without BN, (c) with BN in the lesson)."""
    styles = styles or arms.LESSON_STYLES
    index = indexed(diagnostic_rows)
    figure = new_figure(figsize=(4.3 * (1 + len(styles)), 3.8), layout="constrained")
    a, *bands = figure.subplots(1, 1 + len(styles))
    accuracies = []
    for variant, style in styles.items():
        points = [
            (r["step"], r["accuracy"]) for r in metric_rows if r["variant"] == variant and r["split"] == schema.TEST
        ]
        if points:
            # Markers: without train.test_every the test split is evaluated once, after training,
            # and a line of one point would draw nothing.
            a.plot(*zip(*points), color=style["color"], label=style["label"], marker="o", markersize=4)
            accuracies += [y for _, y in points if y == y]  # NaN: no figure
    a.set_title("(a) test accuracy", fontsize=10)
    a.set_ylabel("test accuracy")
    a.set_xlabel("training step")
    # The paper's 0.6-1.0, unless a network is below it (one near chance, say): then all of it.
    a.set_ylim(0.6 if accuracies and min(accuracies) >= 0.6 else 0.0, 1.0)
    a.grid(alpha=0.3)
    a.legend()
    limits = []
    for ax, (variant, style), letter in zip(bands, styles.items(), "bcdefghijk"):
        percentile_band(ax, index, variant, layers, style["color"])
        ax.set_title(f"({letter}) {style['label']}: layer {layers}, unit {unit}", fontsize=9)
        ax.set_ylabel("input to the activation")
        ax.legend(fontsize=7, loc="upper right")  # the band: 15th-85th percentile; the line: the median
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        limits.append(ax.get_ylim())
    shared = (min(lo for lo, _ in limits), max(hi for _, hi in limits))
    for ax in bands:
        ax.set_ylim(shared)
    if bands:
        a.set_xlim(bands[0].get_xlim())  # the same steps as the bands: the whole of training
    figure.suptitle(title)
    return figure


def covariate_shift_figure(
    metric_rows: list[dict],
    diagnostic_rows: list[dict],
    layers: int,
    unit: int,
    title: str,
    shifts: dict | None = None,
    *,
    styles: dict | None = None,
):
    """covariate_shift.png (diagnostics.ics): (a) validation accuracy of every arm; then, one panel
    per arm, the last hidden layer's fixed unit's input percentiles in training mode (the paper's
    Fig. 1 bands as training sees them, noisy BN's noise included; one y scale for all); then
    that layer's ‖G − G′‖/‖G‖ and cos(G, G′) over training for every arm (Santurkar et al. 2018,
    Definition 2.1); last, both against the layer, each the mean over training.

    shifts: {arm: summary.json's covariate_shift}: its band motion is shown in the panels.
    """
    styles = styles or arms.LESSON_STYLES
    index = indexed(diagnostic_rows)
    columns = max(len(styles), 2)
    figure = new_figure(figsize=(4.2 * columns, 14), layout="constrained")
    grid = figure.add_gridspec(4, 2 * columns)
    a = figure.add_subplot(grid[0, :])
    for variant, style in styles.items():
        points = [
            (r["step"], r["accuracy"])
            for r in metric_rows
            if r["variant"] == variant and r["split"] == schema.VALIDATION
        ]
        if points:
            a.plot(*zip(*points), color=style["color"], label=style["label"])
    a.set_title("(a) validation accuracy", fontsize=10)
    a.set_ylim(0, 1)
    a.grid(alpha=0.3)
    a.legend(loc="lower right")
    bands, limits = [], []
    for i, (variant, style) in enumerate(styles.items()):
        ax = figure.add_subplot(grid[1, 2 * i : 2 * i + 2], sharex=a)
        percentile_band(ax, index, variant, layers, style["color"], schema.TRAINING_UNIT_PERCENTILES)
        shift = (shifts or {}).get(variant) or {}
        moved = shift.get("band_motion_relative")
        ax.set_title(
            f"({'bcdefghijk'[i]}) {style['label']}: layer {layers}, unit {unit}, training mode"
            + ("" if moved is None else f"\nband motion {moved:.3f} of the band's width per evaluation"),
            fontsize=9,
        )
        ax.grid(alpha=0.3)
        if ax.lines:
            limits.append(ax.get_ylim())
        bands.append(ax)
    if limits:
        shared = (min(lo for lo, _ in limits), max(hi for _, hi in limits))
        for ax in bands:
            ax.set_ylim(shared)
    measured = (("ics_relative", "‖G − G′‖ / ‖G‖"), ("ics_cosine", "cos(G, G′)"))
    for k, (quantity, label) in enumerate(measured):
        ax = figure.add_subplot(grid[2, k * columns : (k + 1) * columns], sharex=a)
        for variant, style in styles.items():
            steps, values = series(index, variant, layers, quantity)
            if steps:
                ax.plot(steps, values, color=style["color"], label=style["label"], marker=_lone_point(steps))
        if quantity == "ics_relative" and ax.lines:
            ax.set_yscale("log")
        ax.set_title(f"internal covariate shift, layer {layers}: {label}", fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for k, (quantity, label) in enumerate(measured):
        ax = figure.add_subplot(grid[3, k * columns : (k + 1) * columns])
        drawn_layers = set()
        for variant, style in styles.items():
            per_layer = [(r["layer"], r[quantity]) for r in ((shifts or {}).get(variant) or {}).get("layers", [])]
            per_layer = [(layer, v) for layer, v in per_layer if v is not None and layer > 1]  # layer 1: nothing below
            if per_layer:
                ax.plot(*zip(*per_layer), color=style["color"], label=style["label"], marker="o", markersize=3)
                drawn_layers.update(layer for layer, _ in per_layer)
        if quantity == "ics_relative" and ax.lines:
            ax.set_yscale("log")
        # Two lines: side by side, the two panels' titles ran into each other.
        ax.set_title(f"internal covariate shift by layer\n(mean over training): {label}", fontsize=9)
        ax.set_xlabel("hidden layer")
        if drawn_layers:  # a tick at each layer measured, never between two (nor 1.975 for a lone one)
            ax.set_xticks(sorted(drawn_layers))
            ax.set_xlim(min(drawn_layers) - 0.5, max(drawn_layers) + 0.5)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    figure.suptitle(title)
    return figure
