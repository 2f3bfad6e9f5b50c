"""What a network's run amounts to: robust accuracy figures and an outcome (learned, near chance,
collapsed, diverged).

Several of the lesson's cells are chaotic: relu at lr 2 with bad init and BN swings between
0.35 and 0.90 validation accuracy from one evaluation to the next, so the final point of a
curve is a coin flip. The robust figures are the mean, min and max over the evaluations in the
last LATE_FRACTION of training, and the best point with its step. Pure functions of numbers:
no TensorFlow, no files.
"""

from __future__ import annotations

import math
import statistics

from bn_lab.store.schema import COLLAPSED, DIVERGED, LEARNED, NEAR_CHANCE

# Which accuracy of a run a report aggregates over seeds: the late-window mean (robust: the
# default), the final point (what the lesson printed) or the best point.
FIGURES = {
    "late": "late validation accuracy (mean over the last 10% of training)",
    "final": "final validation accuracy",
    "best": "best validation accuracy",
}

# The late window: evaluations at steps > (1 - LATE_FRACTION) * steps. 10 points for the
# lesson's MLP (every 500 of 50,000 steps), 4 for its short runs (every 50 of 2,000), 1 for
# the conv net (validation every 100 of 800 steps).
LATE_FRACTION = 0.1

# Collapsed: at the final evaluation at least this share of the validation images get the
# same predicted class, so the accuracy is (nearly) a class share, e.g. 0.1126 = class 1.
# A network that learned anything predicts every class about as often as it occurs: the
# largest class share of MNIST's validation split is 11.3% (class 1), so even a poor but
# working network stays far below 0.9; a collapsed one (every relu unit of a layer dead, a
# constant output) sits at 1.0. Between the two, 0.9 leaves room for a few stray predictions.
COLLAPSE_SHARE = 0.9


def late_window_start(steps: int) -> float:
    """Evaluations at steps strictly greater than this are in the late window."""
    return (1 - LATE_FRACTION) * steps


def late_figures(points: list[tuple[int, float]], steps: int) -> dict | None:
    """{mean, min, max, points, after_step} over the evaluations in the late window; None without any.

    points: (step, accuracy) of one network's validation evaluations, in step order.
    A network that diverged has no late window (its last evaluations predate the NaN).
    """
    start = late_window_start(steps)
    late = [accuracy for step, accuracy in points if step > start]
    if not late:
        return None
    return {
        "mean": statistics.fmean(late),
        "min": min(late),
        "max": max(late),
        "points": len(late),
        "after_step": math.floor(start),
    }


def best_figure(points: list[tuple[int, float]]) -> dict | None:
    """{accuracy, step} of the best evaluation (the earliest, on a tie); None without any."""
    if not points:
        return None
    step, accuracy = max(points, key=lambda p: (p[1], -p[0]))
    return {"accuracy": accuracy, "step": step}


# Near chance: the final validation accuracy is less than this above chance, the accuracy of always
# answering the validation split's commonest class (MNIST: 0.1126, so below 0.2126): its
# predictions vary, but it has learned next to nothing (a plain sigmoid MLP at lr 0.01 after
# 50,000 steps sits at 0.14-0.19).
NEAR_CHANCE_MARGIN = 0.1


def classify(diverged: bool, top_class_share: float | None, accuracy: float | None, chance: float) -> str:
    """diverged (the loss became NaN/inf; or the last step's update left weights whose logits are
    not numbers: accuracy None), collapsed (at least COLLAPSE_SHARE of the validation images get one
    class), near chance (accuracy < chance + NEAR_CHANCE_MARGIN) or learned."""
    if diverged or accuracy is None:
        return DIVERGED
    if top_class_share is not None and top_class_share >= COLLAPSE_SHARE:
        return COLLAPSED
    if accuracy < chance + NEAR_CHANCE_MARGIN:
        return NEAR_CHANCE
    return LEARNED


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None where undefined)."""
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)
