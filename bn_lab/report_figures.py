"""A sweep report's figures: heatmap.png (a figure per grid point), curves.png (every seed's curve),
mechanism.png (inside the relu bad-init cells).

Each takes `results`, a report.SweepResults (the sweep's files, read), and a path; matplotlib loads
only to draw. (report imports this module, not the other way round.)
"""

from __future__ import annotations

import math
from pathlib import Path

from bn_lab import files, outcome, rundir, schema
from bn_lab.sweeps.spec import Axis


def validation_curve(run_dir: Path, variant: str) -> tuple[list[int], list[float]]:
    steps, accuracies = [], []
    for row in schema.read_table(run_dir / rundir.METRICS, schema.METRICS_COLUMNS):
        if row["variant"] == variant and row["split"] == schema.VALIDATION:
            steps.append(int(row["step"]))
            accuracies.append(float(row["accuracy"]))
    return steps, accuracies


def layout(manifest: dict) -> tuple[list[int], int | None]:
    """(row axes, column axis) of the figures: learning rate across if it is an axis, else the last axis."""
    keys = [a["key"] for a in manifest["axes"]]
    column = keys.index("optimizer.learning_rate") if "optimizer.learning_rate" in keys else len(keys) - 1
    return [i for i in range(len(keys)) if i != column], column


def figure_grid(results):
    """Row and column labels, and each point's (row, column)."""
    axes = [
        Axis(a["key"], tuple(a["values"]), tuple(a["labels"]) if a["labels"] else None)
        for a in results.manifest["axes"]
    ]
    if not axes:  # one config over seeds (`bnlab run --seeds`): one panel
        return [results.manifest["name"]], [""], {p.name: (0, 0) for p in results.points}, ""
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


def heatmap(results, path: Path) -> None:
    from bn_lab import plots

    row_labels, column_labels, places, column_key = figure_grid(results)
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
    plots.heatmap(
        panels,
        row_labels,
        column_labels,
        path,
        title,
        column_title=column_key,
        value_label=outcome.FIGURES[figure],
        styles=results.styles,
    )


def curves(results, path: Path) -> None:
    from bn_lab import plots

    row_labels, column_labels, places, _ = figure_grid(results)
    sweep_dir = path.parent
    by_cell = {c["name"]: c for c in results.manifest["cells"]}
    panels = []
    for p in results.points:
        lines = []
        for name, cell in by_cell.items():
            if cell["point"] != p.name or name not in results.summaries:
                continue
            for v in results.summaries[name]["variants"]:
                steps, accuracies = validation_curve(sweep_dir / name, v)
                at = results.summaries[name]["variants"][v]["diverged_at_step"]
                lines.append(
                    {"variant": v, "seed": cell["seed"], "steps": steps, "accuracies": accuracies, "diverged_at": at}
                )
        row, column = places[p.name]
        panels.append({"title": p.name, "row": row, "column": column, "lines": lines})
    title = f"sweep {results.manifest['name']}: validation accuracy (every seed)"
    plots.curves(panels, len(row_labels), len(column_labels), path, title, styles=results.styles)


# Weights this much larger than a good init's (0.05 in the lesson) are a bad init: the lesson's is 5.0.
BAD_INIT_SCALE = 1.0


def _diagnostics_series(run_dir: Path) -> dict:
    """(variant, layer, quantity) -> (steps, values) from a run's diagnostics.csv ({} if it has none)."""
    from bn_lab import plots

    try:
        return plots.indexed(schema.read_table(run_dir / rundir.DIAGNOSTICS, schema.DIAGNOSTICS_COLUMNS))
    except (OSError, ValueError):  # none, or damaged: the figure goes without this cell's diagnostics
        return {}


def mechanism(results, path: Path) -> bool:
    """mechanism.png for the relu cells with a bad init, if their diagnostics were on; whether it was drawn.

    Per grid point (a column): the effective learning rate per hidden layer of every arm that
    has one (a normalized arm), and the dead fraction of the last hidden layer of every arm, over
    training, every seed.
    """
    from bn_lab import plots

    panels = []
    for p in results.points:
        cells = [
            (c["name"], c["seed"])
            for c in results.manifest["cells"]
            if c["point"] == p.name and c["name"] in results.summaries
        ]
        first = results.summaries[cells[0][0]] if cells else None
        if not first or first["activation"] != "relu" or first["init_scale"] <= BAD_INIT_SCALE:
            continue
        seeds = []
        for name, seed in cells:
            series = _diagnostics_series(path.parent / name)
            layers = sorted({int(layer) for (_, layer, _) in series if layer != "all"})
            if not layers:
                continue
            seeds.append(
                {
                    "seed": seed,
                    "effective_lr": {
                        v: {
                            layer: series[(v, str(layer), "effective_lr")]
                            for layer in layers
                            if (v, str(layer), "effective_lr") in series
                        }
                        for v in results.styles
                        if (v, "1", "effective_lr") in series
                    },
                    "dead": {
                        v: series[(v, str(layers[-1]), "dead_fraction")]
                        for v in results.styles
                        if (v, str(layers[-1]), "dead_fraction") in series
                    },
                }
            )
        if seeds:
            panels.append({"title": p.name, "seeds": seeds})
    if not panels:
        path.unlink(missing_ok=True)  # an earlier report's figure would describe other cells
        return False
    title = f"sweep {results.manifest['name']}: relu with a bad init, inside the network (every seed)"
    files.save_figure(path, plots.mechanism_figure(panels, title, styles=results.styles))
    return True
