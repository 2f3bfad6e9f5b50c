"""residual_variance.png (diagnostics.residual): each residual block's branch share of its output's
variance against the block, at initialization and at the end of training, every arm, beside De &
Smith's prediction for BN, 1/(ℓ+1) (bn_lab.probes.branch_variance)."""

from __future__ import annotations

from bn_lab.config import arms
from bn_lab.report.inside_figures import indexed, series
from bn_lab.report.plots import new_figure


def residual_variance_figure(
    rows: list[dict], blocks: list[tuple[int, int]], title: str, *, styles: dict | None = None
):
    """blocks: per block, from the first, (its branch-end layer in diagnostics.csv, its position ℓ
    since the skip path last started over: the prediction is 1/(ℓ+1))."""
    styles = styles or arms.LESSON_STYLES
    index = indexed(rows)
    numbers = list(range(1, len(blocks) + 1))
    figure = new_figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    last_step = max((int(r["step"]) for r in rows if r["quantity"] == "branch_share"), default=0)
    for ax, (when, pick) in zip(axes, (("at initialization (step 0)", 0), (f"after training (step {last_step})", -1))):
        ax.plot(
            numbers,
            [1 / (position + 1) for _, position in blocks],
            color="black",
            linestyle="--",
            linewidth=1,
            label="1/(ℓ+1): BN's, De & Smith 2020",
        )
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="½: unnormalized, He init")
        for variant, style in styles.items():
            shares = []
            for layer, _ in blocks:
                steps, values = series(index, variant, layer, "branch_share")
                shares.append(values[pick] if steps else float("nan"))
            if any(s == s for s in shares):  # not all NaN: the arm was measured
                ax.plot(numbers, shares, color=style["color"], marker="o", markersize=3, label=style["label"])
        ax.set_title(when, fontsize=10)
        ax.set_xlabel("residual block ℓ")
        ax.set_ylim(-0.03, 1.0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("branch's share of the block's output variance")
    shown = {}  # every arm drawn in either panel (one that diverged has no line after training)
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            shown.setdefault(label, handle)
    axes[1].legend(list(shown.values()), list(shown), fontsize=8, loc="upper right")
    figure.suptitle(title, fontsize=11)
    return figure
