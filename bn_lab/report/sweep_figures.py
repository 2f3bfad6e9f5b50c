"""A sweep report's figures: heatmap.png (a figure per grid point), curves.png (every seed's curve),
mechanism.png (inside the relu bad-init cells), along_axis.png (accuracy against a numeric axis).

Each takes `results`, a sweep_results.SweepResults (the sweep's files, read), and a path, builds the
panels and draws them (the `*_figure` functions below: matplotlib loads only to draw, through
plots.new_figure). report imports this module, not the other way round.
"""

from __future__ import annotations

import math
from pathlib import Path

from bn_lab.config import arms
from bn_lab.report import intervals, outcome, plots
from bn_lab.store import schema
from bn_lab.store.sweep_manifest import Axis


def layout(manifest: dict) -> tuple[list[int], int | None]:
    """(row axes, column axis) of the figures: learning rate across if it is an axis, else the last axis."""
    keys = [a["key"] for a in manifest["axes"]]
    column = keys.index("optimizer.learning_rate") if "optimizer.learning_rate" in keys else len(keys) - 1
    return [i for i in range(len(keys)) if i != column], column


def figure_grid(results):
    """Row and column labels (each value as the report shows it: `good (0.05)`), each point's
    (row, column), the column axis's key and the rows' keys (" × " between)."""
    axes = [Axis.from_record(a) for a in results.manifest["axes"]]
    if not axes:  # one config over seeds (`bnlab run --seeds`): one panel
        return [results.manifest["name"]], [""], {p.name: (0, 0) for p in results.points}, "", ""
    row_axes, column_axis = layout(results.manifest)
    row_keys, places = [], {}
    for p in results.points:
        row_key = tuple(p.indices[i] for i in row_axes)
        if row_key not in row_keys:
            row_keys.append(row_key)
        places[p.name] = (row_keys.index(row_key), p.indices[column_axis])
    row_labels = [", ".join(axes[a].display(i) for a, i in zip(row_axes, key)) for key in row_keys]
    column_labels = [axes[column_axis].display(i) for i in range(len(axes[column_axis].values))]
    row_title = " × ".join(axes[a].key for a in row_axes)
    return row_labels, column_labels, places, axes[column_axis].key, row_title


def heatmap(results, path: Path) -> bool:
    row_labels, column_labels, places, column_key, row_title = figure_grid(results)
    panels = {}
    for v in results.styles:
        values = [[math.nan] * len(column_labels) for _ in row_labels]
        texts = [["missing"] * len(column_labels) for _ in row_labels]
        hatched = [[False] * len(column_labels) for _ in row_labels]
        for p in results.points:
            r, c = places[p.name]
            done, diverged = len(p.summaries), p.diverged(v)
            mean, std = outcome.mean_std(p.accuracies(v))
            if not done:
                continue
            if mean is None:
                texts[r][c], hatched[r][c] = f"diverged\n{diverged}/{done}", True
                continue
            values[r][c] = mean
            texts[r][c] = f"{mean:.2f}" + (f"±{std:.2f}" if std is not None else "")
            texts[r][c] += f"\n{diverged}/{done} div." if diverged else f"\nn={done}"
        panels[v] = {"values": values, "texts": texts, "hatched": hatched}
    figure = results.points[0].figure if results.points else "late"
    title = f"sweep {results.manifest['name']}: {outcome.FIGURES[figure]}, mean over seeds"
    return plots.drawn(
        path,
        heatmap_figure,
        panels,
        row_labels,
        column_labels,
        title,
        results.styles,
        column_title=column_key,
        value_label=outcome.FIGURES[figure],
        row_title=row_title,
    )


def curves(results, path: Path) -> bool:
    row_labels, column_labels, places, _, _ = figure_grid(results)
    by_cell = {c["name"]: c for c in results.manifest["cells"]}
    panels = []
    for p in results.points:
        lines = []
        for name, cell in by_cell.items():
            if cell["point"] != p.name or name not in results.summaries:
                continue
            for v in results.summaries[name]["variants"]:
                steps, accuracies = results.curves[name].get(v, ([], []))
                at = results.summaries[name]["variants"][v]["diverged_at_step"]
                lines.append(
                    {"variant": v, "seed": cell["seed"], "steps": steps, "accuracies": accuracies, "diverged_at": at}
                )
        row, column = places[p.name]
        title = ", ".join(label for label in (row_labels[row], column_labels[column]) if label)
        panels.append({"title": title, "row": row, "column": column, "lines": lines})
    title = f"sweep {results.manifest['name']}: validation accuracy (every seed)"
    return plots.drawn(path, curves_figure, panels, len(row_labels), len(column_labels), title, results.styles)


# Weights this much larger than a good init's (0.05 in the lesson) are a bad init: the lesson's is 5.0.
MODES = ((None, "-", "EMA"), *((o.section, o.linestyle, o.long) for o in schema.OTHER_STATISTICS.values()))


def _number(value) -> float | None:
    """An axis value as a position on a numeric axis: a number, or the sum of a list of numbers
    (model.blocks: the blocks of every stage, the depth); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list) and value and all(_number(v) is not None and not isinstance(v, list) for v in value):
        return sum(value)
    return None


def numeric_axis(manifest: dict) -> int | None:
    """The axis along_axis.png draws against: the figures' column axis (the learning rate if it is
    one) when its values are numbers (or lists of numbers, drawn at their sum), at least three of
    them; else the last such axis; else None."""
    axes = manifest["axes"]

    def numeric(i):
        values = axes[i]["values"]
        return len(values) >= 3 and all(_number(v) is not None for v in values)

    _, column = layout(manifest) if axes else ([], None)
    if column is not None and numeric(column):
        return column
    return next((i for i in reversed(range(len(axes))) if numeric(i)), None)


def along_axis(results, path: Path) -> bool:
    """along_axis.png: each arm's accuracy (the report's figure) against the sweep's numeric axis,
    mean over seeds with its 95% t interval, in each evaluation mode the arm has (MODES); one panel
    per combination of the other axes. Whether it was drawn (a sweep without a numeric axis: not)."""
    at = numeric_axis(results.manifest)
    if at is None:
        path.unlink(missing_ok=True)  # an earlier report's figure would describe other cells
        return False
    axis = results.manifest["axes"][at]
    others = [(i, Axis.from_record(a)) for i, a in enumerate(results.manifest["axes"]) if i != at]
    panels = {}
    for p in results.points:
        title = "_".join(other.fragment(p.indices[i]) for i, other in others)
        panel = panels.setdefault(title, {"title": title or results.manifest["name"], "lines": {}})
        x = _number(axis["values"][p.indices[at]])
        for v, style in results.styles.items():
            population = arms.uses_population_statistics(style["normalizer"])
            for statistics, linestyle, mode in MODES:
                if statistics and not population:
                    continue
                values = p.accuracies(v, statistics)
                if not values:
                    continue
                mean = sum(values) / len(values)
                low, high = intervals.t_interval(values) or (mean, mean)
                line = panel["lines"].setdefault(
                    (v, mode), {"variant": v, "mode": mode, "linestyle": linestyle, "points": []}
                )
                line["points"].append((x, mean, low, high))
    figure_name = results.points[0].figure if results.points else "late"
    summed = any(isinstance(v, list) for v in axis["values"])
    key = f"{axis['key']} (their sum)" if summed else axis["key"]
    title = f"sweep {results.manifest['name']}: {outcome.FIGURES[figure_name]} against {key}, mean over seeds (95% t interval)"
    return plots.drawn(path, along_axis_figure, list(panels.values()), key, title, results.styles)


# --- drawing (matplotlib loads here, through plots) -------------------------------------------


def along_axis_figure(panels: list[dict], key: str, title: str, styles: dict):
    """Side-by-side panels of lines: panels [{"title", "lines": {..: {"variant", "mode", "linestyle",
    "points": [(x, mean, low, high)]}}]. A log x scale when the values span a factor of 8 or more."""
    from matplotlib.lines import Line2D

    figure = plots.new_figure(figsize=(5.2 * len(panels) + 0.6, 4.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    modes = []
    for ax, panel in zip(axes, panels):
        xs = set()
        for line in panel["lines"].values():
            points = sorted(line["points"])
            x, mean, low, high = zip(*points)
            xs.update(x)
            color = styles[line["variant"]]["color"]
            ax.plot(x, mean, color=color, linestyle=line["linestyle"], marker="o", markersize=3)
            ax.fill_between(x, low, high, color=color, alpha=0.12, linewidth=0)
            if line["mode"] not in modes:
                modes.append(line["mode"])
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log")
        ax.set_xticks(sorted(xs), [f"{x:g}" for x in sorted(xs)])
        ax.minorticks_off()
        ax.set_ylim(0, 1)
        ax.set_xlabel(key)
        ax.set_title(panel["title"], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy")
    handles = [Line2D([], [], color=s["color"], label=s["label"]) for s in styles.values()]
    handles += [Line2D([], [], color="grey", linestyle=ls, label=mode) for _, ls, mode in MODES if mode in modes]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8)
    figure.suptitle(title, fontsize=10)
    return figure


def heatmap_figure(
    panels: dict,
    row_labels: list[str],
    column_labels: list[str],
    title: str,
    styles: dict,
    column_title: str = "",
    value_label: str = "validation accuracy",
    row_title: str = "",
):
    """Side-by-side panels, one per arm, of a value per grid point, annotated.

    panels: variant -> {"values": rows x columns of floats (NaN: nothing to colour, e.g.
    diverged or missing), "texts": rows x columns of annotations, optional "hatched": rows x
    columns of bools (e.g. diverged on every seed)}. One colour scale, 0 to 1.
    """
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    variants = [v for v in styles if v in panels]
    rows, columns = len(row_labels), len(column_labels)
    figure = plots.new_figure(figsize=(len(variants) * (1.5 * columns + 2.2), 0.8 * rows + 1.8), layout="constrained")
    axes = figure.subplots(1, len(variants), squeeze=False)
    colours = colormaps["viridis"].with_extremes(bad="lightgrey")  # diverged or missing: no accuracy
    for ax, variant in zip(axes[0], variants):
        values = np.ma.masked_invalid(np.array(panels[variant]["values"], dtype=float))
        image = ax.imshow(values, cmap=colours, vmin=0, vmax=1, aspect="auto")
        for r in range(rows):
            for c in range(columns):
                dark = values.mask[r, c] or values[r, c] > 0.6  # viridis is light at the top
                hatched = bool(panels[variant].get("hatched") and panels[variant]["hatched"][r][c])
                if hatched:
                    ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="//", edgecolor="grey"))
                ax.text(
                    c,
                    r,
                    panels[variant]["texts"][r][c],
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if dark else "white",
                    bbox=dict(facecolor="lightgrey", edgecolor="none") if hatched else None,
                )
        ax.set_xticks(range(columns), column_labels)
        ax.set_yticks(range(rows), row_labels if ax is axes[0][0] else [])
        ax.set_xlabel(column_title)
        ax.set_title(styles[variant]["label"])
    axes[0][0].set_ylabel(row_title)
    figure.colorbar(image, ax=axes[0].tolist(), fraction=0.04, label=value_label)
    figure.suptitle(title)
    return figure


def curves_figure(panels: list[dict], rows: int, columns: int, title: str, styles: dict):
    """Small multiples: validation accuracy vs step, one panel per grid point, every seed overlaid.

    panels: {"title", "row", "column", "lines": [{"variant", "seed", "steps", "accuracies",
    "diverged_at"}]}. A diverged line ends with an x at the step it diverged, at its last accuracy.
    """
    from matplotlib.lines import Line2D

    figure = plots.new_figure(figsize=(3.2 * columns + 0.5, 2.4 * rows + 1.2), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat:
        ax.set_visible(False)
    for panel in panels:
        ax = axes[panel["row"]][panel["column"]]
        ax.set_visible(True)
        for line in panel["lines"]:
            style = styles[line["variant"]]
            ax.plot(line["steps"], line["accuracies"], color=style["color"], alpha=0.7, linewidth=1)
            if line["diverged_at"] is not None and line["steps"]:  # the x at the step it diverged
                at, last = line["diverged_at"], line["accuracies"][-1]
                ax.plot(
                    [line["steps"][-1], at], [last, last], color=style["color"], alpha=0.7, linewidth=1, linestyle=":"
                )
                ax.plot(at, last, "x", color=style["color"], markersize=7)
        if not panel["lines"]:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_ylim(0, 1)
        ax.set_title(panel["title"], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy")
    handles = [Line2D([], [], color=s["color"], label=s["label"]) for s in styles.values()]
    handles.append(Line2D([], [], color="grey", marker="x", linestyle="", label="diverged"))
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8)
    figure.suptitle(title)
    return figure
