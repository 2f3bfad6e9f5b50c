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
