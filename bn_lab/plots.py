"""Figures. Each function takes plain rows (dicts as in metrics.csv / summary.csv) and a path."""

from __future__ import annotations

from pathlib import Path

from bn_lab import files

VARIANT_STYLE = {
    "without_bn": {"label": "without BN", "color": "tab:red"},
    "with_bn": {"label": "with BN", "color": "tab:blue"},
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def accuracy_plot(rows: list[dict], title: str, path: str | Path, diverged_at: dict | None = None) -> None:
    """Validation accuracy vs training step for both variants on one plot, y from 0 to 1."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for variant, style in VARIANT_STYLE.items():
        points = [(r["step"], r["accuracy"]) for r in rows if r["variant"] == variant and r["split"] == "validation"]
        if not points:
            continue
        steps, accuracies = zip(*points)
        label = style["label"]
        if diverged_at and diverged_at.get(variant) is not None:
            label += f" (diverged at step {diverged_at[variant]:,})"
            axes.axvline(diverged_at[variant], color=style["color"], linestyle=":", linewidth=1)
        axes.plot(steps, accuracies, color=style["color"], label=label, marker="." if len(steps) < 30 else None)
    axes.set_ylim(0, 1)
    axes.set_xlabel("training step (batches)")
    axes.set_ylabel("validation accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    files.save_figure(path, figure)
    plt.close(figure)


def heatmap(
    panels: dict,
    row_labels: list[str],
    column_labels: list[str],
    path: str | Path,
    title: str,
    column_title: str = "",
) -> None:
    """Side-by-side panels (without BN, with BN) of a value per grid point, annotated.

    panels: variant -> {"values": rows x columns of floats (NaN: nothing to colour, e.g.
    diverged or missing), "texts": rows x columns of annotations, optional "hatched": rows x
    columns of bools (e.g. diverged on every seed)}. One colour scale, 0 to 1.
    """
    import numpy as np

    plt = _pyplot()
    variants = [v for v in VARIANT_STYLE if v in panels]
    rows, columns = len(row_labels), len(column_labels)
    figure, axes = plt.subplots(
        1,
        len(variants),
        figsize=(len(variants) * (1.5 * columns + 2.2), 0.8 * rows + 1.8),
        squeeze=False,
        layout="constrained",
    )
    colours = plt.get_cmap("viridis").with_extremes(bad="lightgrey")  # diverged or missing: no accuracy
    for ax, variant in zip(axes[0], variants):
        values = np.ma.masked_invalid(np.array(panels[variant]["values"], dtype=float))
        image = ax.imshow(values, cmap=colours, vmin=0, vmax=1, aspect="auto")
        for r in range(rows):
            for c in range(columns):
                dark = values.mask[r, c] or values[r, c] > 0.6  # viridis is light at the top
                hatched = bool(panels[variant].get("hatched") and panels[variant]["hatched"][r][c])
                if hatched:
                    ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="//", edgecolor="grey"))
                ax.text(c, r, panels[variant]["texts"][r][c], ha="center", va="center", fontsize=8,
                        color="black" if dark else "white",
                        bbox=dict(facecolor="lightgrey", edgecolor="none") if hatched else None)
        ax.set_xticks(range(columns), column_labels)
        ax.set_yticks(range(rows), row_labels)
        ax.set_xlabel(column_title)
        ax.set_title(VARIANT_STYLE[variant]["label"])
    figure.colorbar(image, ax=axes[0].tolist(), fraction=0.04, label="final validation accuracy")
    figure.suptitle(title)
    files.save_figure(path, figure)
    plt.close(figure)


def curves(panels: list[dict], rows: int, columns: int, path: str | Path, title: str) -> None:
    """Small multiples: validation accuracy vs step, one panel per grid point, every seed overlaid.

    panels: {"title", "row", "column", "lines": [{"variant", "seed", "steps", "accuracies",
    "diverged_at"}]}. A diverged line ends with an x at its last evaluation.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(3.2 * columns + 0.5, 2.4 * rows + 1.2),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.set_visible(False)
    for panel in panels:
        ax = axes[panel["row"]][panel["column"]]
        ax.set_visible(True)
        for line in panel["lines"]:
            style = VARIANT_STYLE[line["variant"]]
            ax.plot(line["steps"], line["accuracies"], color=style["color"], alpha=0.7, linewidth=1)
            if line["diverged_at"] is not None and line["steps"]:
                ax.plot(line["steps"][-1], line["accuracies"][-1], "x", color=style["color"], markersize=7)
        if not panel["lines"]:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_ylim(0, 1)
        ax.set_title(panel["title"], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy")
    handles = [plt.Line2D([], [], color=s["color"], label=s["label"]) for s in VARIANT_STYLE.values()]
    handles.append(plt.Line2D([], [], color="grey", marker="x", linestyle="", label="diverged"))
    figure.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    figure.suptitle(title)
    files.save_figure(path, figure)
    plt.close(figure)
