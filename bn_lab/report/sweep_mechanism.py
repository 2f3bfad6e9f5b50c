"""A sweep's mechanism.png: inside the relu cells with a bad init, each arm's effective learning rate
and dead units over training, every seed (the lesson's chaotic cells, explained)."""

from __future__ import annotations

from pathlib import Path

from bn_lab.report import inside_figures, plots
from bn_lab.store import rundir, schema

BAD_INIT_SCALE = 1.0


def _diagnostics_series(run_dir: Path) -> dict:
    """(variant, layer, quantity) -> (steps, values) from a run's diagnostics.csv ({} if it has none)."""
    try:
        return inside_figures.indexed(schema.read_table(run_dir / rundir.DIAGNOSTICS, schema.DIAGNOSTICS_COLUMNS))
    except (OSError, ValueError):  # none, or damaged: the figure goes without this cell's diagnostics
        return {}


def mechanism(results, path: Path) -> bool:
    """mechanism.png for the relu cells with a bad init, if their diagnostics were on; whether it was drawn.

    Per grid point (a column): the effective learning rate per hidden layer of every arm that
    has one (a normalized arm), and the dead fraction of the last hidden layer of every arm, over
    training, every seed.
    """
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
    return plots.drawn(path, mechanism_figure, panels, title, results.styles)


# An arm's accuracy in each of the ways it is evaluated (summary.json's sections), as along_axis.png
# draws them: the EMA population statistics (solid), then schema.OTHER_STATISTICS (exact ones
# dashed, batch statistics dotted).
def mechanism_figure(panels: list[dict], title: str, styles: dict):
    """mechanism.png: why BN only sometimes rescues relu with a bad init, one column per grid point.

    Top, one row per arm that has one: its effective learning rate (lr/‖w‖² with SGD) per hidden
    layer (a scale-invariant layer's real step size); bottom: the dead fraction of the last hidden
    layer, every arm. panels: {"title", "seeds": [{"seed", "effective_lr": {arm: {layer: (steps,
    values)}}, "dead": {arm: (steps, values)}}]}; every seed is a line.
    """
    from matplotlib import colormaps

    normalized = [v for v in styles if any(v in s["effective_lr"] for p in panels for s in p["seeds"])]
    rows = len(normalized) + 1
    figure = plots.new_figure(figsize=(3.8 * len(panels) + 0.6, 3.1 * rows), layout="constrained")
    axes = figure.subplots(rows, len(panels), squeeze=False, sharex="col")
    for row in axes[:-1]:  # one scale for every cell's effective learning rate: lr 0.01's is 100x below lr 1's
        for top in row:
            if top is not axes[0][0]:
                top.sharey(axes[0][0])
    for column, panel in enumerate(panels):
        bottom = axes[-1][column]
        layers = max((len(lr) for s in panel["seeds"] for lr in s["effective_lr"].values()), default=1)
        colours = colormaps["viridis"].resampled(max(layers, 2))
        for i, seed in enumerate(panel["seeds"]):
            for top, variant in zip(axes[:-1, column], normalized):
                for layer, (steps, values) in seed["effective_lr"].get(variant, {}).items():
                    top.plot(
                        steps,
                        values,
                        color=colours(layer - 1),
                        linewidth=1,
                        alpha=0.8,
                        label=f"layer {layer}" if i == 0 else None,
                    )
            for variant, (steps, values) in seed["dead"].items():
                style = styles[variant]
                bottom.plot(
                    steps,
                    values,
                    color=style["color"],
                    linewidth=1,
                    alpha=0.8,
                    label=style["label"] if i == 0 else None,
                    marker="o" if len(steps) == 1 else None,
                    markersize=3,
                )  # a network that diverged at once: one point
        for row, (top, variant) in enumerate(zip(axes[:-1, column], normalized)):
            if top.lines:
                top.set_yscale("log")
                top.legend(fontsize=7, loc="upper right")
            heading = f"{panel['title']}\n" if row == 0 else ""
            top.set_title(f"{heading}{styles[variant]['label']}: effective learning rate", fontsize=9)
        if bottom.lines:
            bottom.legend(fontsize=7, loc="best")
        bottom.set_title("dead units, last hidden layer (fraction)", fontsize=9)
        bottom.set_ylim(-0.03, 1.03)
        bottom.set_xlabel("training step")
        for ax in axes[:, column]:
            ax.grid(alpha=0.3)
    figure.suptitle(title)
    return figure
