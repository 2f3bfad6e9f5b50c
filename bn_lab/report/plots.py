"""A run's figures (accuracy.png, diagnostics.png, landscape.png, paper_fig1.png, covariate_shift.png; a sweep's are
bn_lab.report.sweep_figures). Each function takes plain rows (dicts as in metrics.csv /
diagnostics.csv) and, as `styles`, how each arm is shown ({arm name: {"label", "color", ...}} in
the run's order: arms.Arm.as_dict, or arms.recorded(summary); default: the lesson's pair).

Figures are matplotlib `Figure` objects made without pyplot: no global state, no backend to
choose, nothing to close, and a figure a function returns (`accuracy_figure`, for
`Run.plot()`) shows once, inline, in a notebook.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from pathlib import Path

from bn_lab.config import arms
from bn_lab.config.user_text import printable
from bn_lab.disk import files
from bn_lab.store import schema


def new_figure(**options):
    """A matplotlib Figure whose every text is drawn as plain text (_plain_text_figure)."""
    _show_figures_inline()
    return _plain_text_figure()(**options)


def warm_up() -> None:
    """Imports and loads what a process's first figure needs (matplotlib, the Agg canvas, the font,
    PNG output) by drawing a tiny one: a run calls it on its figure thread while it trains, so that
    its figures after training wait only for their own drawing."""
    import io

    from bn_lab.report import inside_figures  # noqa: F401 - imported for its imports

    figure = new_figure(figsize=(1, 1))
    figure.add_subplot().set_title("0.5")
    figure.savefig(io.BytesIO(), format="png", dpi=10)


def our_texts(artist):
    """Every Text in `artist` that bn_lab wrote (titles, labels, legends, notes, tick labels it gave),
    not the tick labels matplotlib's number formatters write: a log axis's "$\\mathdefault{10^{2}}$"
    is math mode and must stay so. Those axes' ticks are not made here: building every axis's ticks
    early, only to look at them, was a good part of a figure's drawing."""
    from matplotlib import ticker
    from matplotlib.axis import Axis
    from matplotlib.text import Text

    numbers = (ticker.ScalarFormatter, ticker.LogFormatter, ticker.EngFormatter, ticker.PercentFormatter)
    if isinstance(artist, Axis):
        yield artist.label
        for ticks, formatter in (
            (artist.get_major_ticks, artist.get_major_formatter()),
            (artist.get_minor_ticks, artist.get_minor_formatter()),
        ):
            if not isinstance(formatter, (*numbers, ticker.NullFormatter)):  # labels given: set_xticks(ticks, labels)
                yield from (t for tick in ticks() for t in (tick.label1, tick.label2))
        return
    if isinstance(artist, Text):
        yield artist
    for child in artist.get_children():
        yield from our_texts(child)


@functools.cache
def _plain_text_figure():
    """A Figure that draws every text bn_lab writes as it is written: a label or title is the user's
    text, never matplotlib's math mode (`$\\foo$` failed after training, and "50$ and 60$" was drawn
    as math). The tick formatters' own labels keep it (our_texts)."""
    from matplotlib.figure import Figure

    class PlainTextFigure(Figure):
        def draw(self, renderer):
            for text in our_texts(self):
                text.set_parse_math(False)
            with warnings.catch_warnings():
                # A label or title in a script the font lacks (a CJK description, an emoji) draws as
                # boxes; matplotlib's warning per missing character is noise, not news.
                warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from")
                super().draw(renderer)

    return PlainTextFigure


def drawn(path: str | Path, figure_of, *args, tight: bool = True, **kwargs) -> bool:
    """Draws `figure_of(*args, **kwargs)` into `path`; whether it was. A figure that fails to draw
    is a one-line warning: it never costs the finished run or report it illustrates (a place that
    cannot be written is that run's problem, as for any of its files). tight: files.save_figure's."""
    try:
        files.save_figure(path, figure_of(*args, **kwargs), tight=tight)
    except files.OutputError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever matplotlib raises: the run is kept
        Path(path).unlink(missing_ok=True)  # an earlier figure there would describe something else
        reason = printable(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", 160)
        warnings.warn(f"{Path(path).name} was not drawn ({reason}); everything else is kept", stacklevel=2)
        return False
    return True


def _show_figures_inline() -> None:
    """In IPython/Jupyter: a Figure that a cell returns is shown as an image.

    pyplot's inline backend would register that, but these figures never touch pyplot
    (so a returned figure shows once, not twice); IPython's own function registers it.
    """
    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython
    from IPython.core.pylabtools import select_figure_formats

    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"})


def accuracy_figure(rows: list[dict], title: str, diverged_at: dict | None = None, *, styles: dict | None = None):
    """Validation accuracy vs training step for every arm on one plot, y from 0 to 1, with the
    training steps' own accuracy (thin) and the other evaluation modes; the legend beside the axes."""
    styles = styles or arms.LESSON_STYLES
    figure = new_figure(figsize=(11, 4.5))
    axes = figure.subplots()
    for variant, style in styles.items():
        points = [
            (r["step"], r["accuracy"]) for r in rows if r["variant"] == variant and r["split"] == schema.VALIDATION
        ]
        if not points:
            continue
        steps, accuracies = zip(*points)
        label = style["label"]
        if diverged_at and diverged_at.get(variant) is not None:
            label += f" (diverged at step {diverged_at[variant]:,})"
            axes.axvline(diverged_at[variant], color=style["color"], linestyle=":", linewidth=1)
        axes.plot(steps, accuracies, color=style["color"], label=label, marker="." if len(steps) < 30 else None)
        own = [
            (r["step"], r["accuracy"]) for r in rows if r["variant"] == variant and r["split"] == schema.TRAINING_STEPS
        ]
        if own:
            axes.plot(
                *zip(*own), color=style["color"], linewidth=2.5, alpha=0.25, label=f"{style['label']}, training steps"
            )
        for mode in schema.OTHER_STATISTICS.values():
            other = [(r["step"], r["accuracy"]) for r in rows if r["variant"] == variant and r["split"] == mode.split]
            if other:
                axes.plot(
                    *zip(*other),
                    color=style["color"],
                    linewidth=0.7,
                    alpha=0.8,
                    linestyle=mode.linestyle,
                    label=f"{style['label']}, {mode.long}",
                )
    axes.set_ylim(0, 1)
    axes.set_xlabel("training step (batches)")
    axes.set_ylabel("accuracy (validation unless the legend says otherwise)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # off the curves
    return figure


# --- inside the network (diagnostics.csv) ---------------------------------------------------


def batch_size_curve_figure(curves: dict[str, dict], title: str, *, styles: dict | None = None):
    """batch_size_curve.png: each arm's accuracy in training mode (batch statistics) on test batches
    of 1, 2, 4, ... images, each batch normalized as one group, and in inference mode on the same
    images (a dashed line): the single-image pitfall as a curve. curves: {arm: summary.json's
    batch_size_curve}."""
    styles = styles or arms.LESSON_STYLES
    figure = new_figure(figsize=(6.4, 4.2))
    axes = figure.subplots()
    images = []
    for variant, curve in curves.items():
        style = styles[variant]
        trained = curve.get("group_size")  # 0, or the batch's size: the whole batch
        groups = f" (trained in groups of {trained})" if trained and trained != curve["sizes"][-1] else ""
        no_figure = lambda values: [math.nan if v is None else v for v in values]  # noqa: E731 - logits not numbers
        axes.plot(
            curve["sizes"],
            no_figure(curve["training_mode"]),
            color=style["color"],
            marker="o",
            label=f"{style['label']}, training mode{groups}",
        )
        axes.plot(
            curve["sizes"],
            no_figure(curve["inference_mode"]),
            color=style["color"],
            linestyle="--",
            linewidth=1,
            label=f"{style['label']}, inference mode",
        )
        images, sizes = curve["images"], curve["sizes"]
    axes.set_xscale("log", base=2)
    axes.set_xticks(sizes, [str(n) for n in sizes])
    axes.set_ylim(0, 1)
    axes.set_xlabel("evaluation batch size")
    axes.set_ylabel(f"test accuracy, first {max(images)} images (whole batches)")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return figure
