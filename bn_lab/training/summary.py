"""summary.json: each arm's figures (the final point, the robust ones, its outcome, the checks),
and the run's, from the training result."""

from __future__ import annotations

import math
import statistics

import numpy as np

from bn_lab.config import arms
from bn_lab.config import loading as configs
from bn_lab.report import outcome
from bn_lab.store import schema


def _finite(x):
    return x if x is None or math.isfinite(x) else None


def _points(evaluations, variant: str, split: str) -> list[tuple[int, float]]:
    """(step, accuracy) of one arm's evaluations of a split; an evaluation whose logits were not
    numbers has no accuracy (NaN: evaluation._figures) and is left out."""
    return [
        (e.step, e.accuracy)
        for e in evaluations
        if e.variant == variant and e.split == split and math.isfinite(e.accuracy)
    ]


def arm_summary(config: dict, result, name: str, chance: float = 0.0) -> dict:
    """One arm's figures: the final point, the robust ones (late window, best), its outcome.
    chance: the validation accuracy of always answering its commonest class."""
    r, steps = result.arms[name], config["train"]["steps"]
    validation = _points(result.evaluations, name, schema.VALIDATION)
    figures = {
        "outcome": outcome.classify(
            r.diverged, _finite(r.final_top_class_share), _finite(r.final_val_accuracy), chance
        ),
        "final_val_accuracy": _finite(r.final_val_accuracy),
        "late_val_accuracy": None if r.diverged else outcome.late_figures(validation, steps),
        "best_val_accuracy": outcome.best_figure(validation),
        "top_class_share": _finite(r.final_top_class_share),
        "final_val_loss": _finite(r.final_val_loss),
        "test_accuracy": _finite(r.test_accuracy),
        "test_loss": _finite(r.test_loss),
        "single_sample": {"inference": r.single_sample_inference, "training": r.single_sample_training},
        "predictions": r.predictions,
        "predictions_training_mode": r.predictions_training,
        "diverged": r.diverged,
        "diverged_at_step": r.diverged_at_step,
        "steps_trained": r.steps_trained,
        "steps_per_second": None if r.steps_per_second is None else round(r.steps_per_second, 1),
    }
    arm = arms.named(config, name)
    if arm.has_population_statistics and "momentum" in arm.options:
        # What the moving averages still hold of their starting values (0 and 1) after the steps
        # trained: the EMA figures are off by about that much while it is not small.
        figures["moving_average_start_weight"] = arm.options["momentum"] ** r.steps_trained
    inside = last_hidden_layer(result.diagnostics, name)
    if inside:
        figures["diagnostics"] = inside
    shift = covariate_shift(result.diagnostics, name)
    if shift:
        figures["covariate_shift"] = shift
    shares = branch_shares(result.diagnostics, name)
    if shares:
        figures["residual"] = shares
    # An arm with population statistics: the same figures with exact statistics, and with batch statistics.
    for other in schema.OTHER_STATISTICS.values():
        measured = [e for e in result.evaluations if e.variant == name and e.split == other.split]
        if measured:
            points = _points(measured, name, other.split)
            figures[other.section] = {
                "final_val_accuracy": _finite(measured[-1].accuracy) if not r.diverged else None,
                "late_val_accuracy": None if r.diverged else outcome.late_figures(points, steps),
                "best_val_accuracy": outcome.best_figure(points),
            }
    if r.batch_size_curve:
        curve = {
            **r.batch_size_curve,
            **{mode: [_finite(a) for a in r.batch_size_curve[mode]] for mode in ("training_mode", "inference_mode")},
        }
        figures["batch_size_curve"] = {**curve, "good_from": good_from(curve)}
    return figures


# Training mode counts as good enough, on batches of a size, when its accuracy is at most this much
# below inference mode's on the same images.
CLOSE_TO_INFERENCE = 0.01


def good_from(curve: dict) -> int | None:
    """The smallest evaluation batch size from which training mode (batch statistics) is within
    CLOSE_TO_INFERENCE of inference mode on the same images, at that size and every larger one
    (None: not even at the training batch's size; an accuracy that is None, of logits that were not
    numbers, is never close)."""
    found = None
    for size, training, inference in reversed(
        list(zip(curve["sizes"], curve["training_mode"], curve["inference_mode"]))
    ):
        if training is None or inference is None or training < inference - CLOSE_TO_INFERENCE:
            break
        found = size
    return found


# summary.json's figures from the diagnostics: the last hidden layer at the network's last evaluation.
END_OF_TRAINING = ("dead_fraction", "saturated_fraction", "effective_lr", "kernel_norm")


def last_hidden_layer(diagnostic_rows: list[dict], variant: str) -> dict | None:
    """{step, layer, dead or saturated fraction, effective_lr (BN), kernel_norm} at the last measurement.

    For a diverged network, its last measurement before it diverged.
    """
    mine = [r for r in diagnostic_rows if r["variant"] == variant and r["layer"] != "all"]
    if not mine:
        return None
    step, layer = max(r["step"] for r in mine), max(r["layer"] for r in mine)
    values = {r["quantity"]: r["value"] for r in mine if (r["step"], r["layer"]) == (step, layer)}
    # A scale-invariant layer's kernel can grow to inf while its loss stays finite: null in the JSON.
    return {"step": step, "layer": layer, **{q: _finite(values[q]) for q in END_OF_TRAINING if q in values}}


# The ICS probe's figures (bn_lab.probes.ics), averaged over the evaluations after step 0.
ICS_FIGURES = ("ics_l2", "ics_relative", "ics_cosine")


def _band_motion(at: dict[int, dict]) -> tuple[float | None, float | None]:
    """(raw, relative) motion of the training-mode band between consecutive evaluations: the mean
    |change| of its 15th, 50th and 85th percentiles, and that over the band's mean width (85th − 15th
    percentile, over the evaluations). A ratio of the means, not a mean of ratios: a band that
    starts nearly flat (a plain network's small initial pre-activations) would make the first
    evaluations' ratios dwarf the rest of training."""
    p15, _, p85 = schema.TRAINING_UNIT_PERCENTILES
    steps = sorted(at)
    moves = [
        statistics.fmean(abs(at[b][q] - at[a][q]) for q in schema.TRAINING_UNIT_PERCENTILES)
        for a, b in zip(steps, steps[1:])
    ]
    if not moves:
        return None, None
    raw, width = statistics.fmean(moves), statistics.fmean(at[s][p85] - at[s][p15] for s in steps)
    return _finite(raw), (_finite(raw / width) if width > 0 else None)


def _ics_means(at: dict[int, dict]) -> dict:
    later = [at[s] for s in sorted(at) if s > 0]  # at step 0 nothing has trained yet
    figures = {}
    for quantity in ICS_FIGURES:
        values = [v[quantity] for v in later if quantity in v and math.isfinite(v[quantity])]
        figures[quantity] = _finite(statistics.fmean(values)) if values else None
    return figures


def covariate_shift(diagnostic_rows: list[dict], variant: str) -> dict | None:
    """The covariate shift over training (diagnostics.ics; bn_lab.probes.ics), or None: the last hidden
    layer's figures at the top level, every hidden layer's ICS in `layers`.

    band_motion: how far the last hidden layer's fixed unit's training-mode input distribution moves
    from one evaluation to the next, the mean over consecutive evaluations of the mean |change| of
    its 15th, 50th and 85th percentiles; band_motion_relative: the same over the band's mean width
    (p85 − p15), so that arms whose units are on different scales (a normalized and a raw
    pre-activation) compare; ics_l2, ics_relative, ics_cosine: ‖G − G′‖, ‖G − G′‖/‖G‖ and
    cos(G, G′), their means over the evaluations after step 0.
    """
    mine = [r for r in diagnostic_rows if r["variant"] == variant and r["layer"] != "all"]
    if not any(r["quantity"] in schema.TRAINING_UNIT_PERCENTILES for r in mine):
        return None
    by_layer: dict[int, dict[int, dict]] = {}  # layer -> step -> {quantity: value}
    for r in mine:
        by_layer.setdefault(r["layer"], {}).setdefault(r["step"], {})[r["quantity"]] = r["value"]
    last = max(
        layer for layer, at in by_layer.items() if any(schema.TRAINING_UNIT_PERCENTILES[0] in v for v in at.values())
    )
    raw, relative = _band_motion(by_layer[last])
    figures = {
        "layer": last,
        "band_motion": raw,
        "band_motion_relative": relative,
        **_ics_means(by_layer[last]),
    }
    figures["layers"] = [{"layer": layer, **_ics_means(by_layer[layer])} for layer in sorted(by_layer)]
    return figures


def branch_shares(diagnostic_rows: list[dict], variant: str) -> dict | None:
    """diagnostics.residual: each block's branch share of its output's variance (from the first
    block) at the first evaluation (initialization) and the last one."""
    at: dict[int, dict[int, float]] = {}  # step -> {layer: share}
    for r in diagnostic_rows:
        if r["variant"] == variant and r["quantity"] == "branch_share":
            at.setdefault(int(r["step"]), {})[int(r["layer"])] = _finite(r["value"])
    if not at:
        return None
    first, last = at[min(at)], at[max(at)]
    return {
        "branch_share_initial": [first[k] for k in sorted(first)],
        "branch_share_final": [last.get(k) for k in sorted(first)],
        "final_step": max(at),
    }


def summary(config: dict, result, wall_seconds: float, device: str, validation_labels) -> dict:
    chance = float(np.bincount(validation_labels).max() / len(validation_labels))
    variants = {name: arm_summary(config, result, name, chance) for name in result.arms}
    for figures in variants.values():
        figures["wall_seconds"] = round(wall_seconds, 2)
    return {
        "experiment": config["experiment"],
        "description": config["description"],
        "seed": config["seed"],
        "backend": config["bn"]["backend"],
        "model": config["model"]["name"],
        "activation": config["model"]["activation"],
        "learning_rate": config["optimizer"]["learning_rate"],
        "init_scale": config["init"]["scale"],
        "steps": config["train"]["steps"],
        "single_samples": result.single_samples,
        "config_digest": configs.digest(config),
        "device": device,
        "train_seconds": round(result.train_seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "late_window": {
            "fraction": outcome.LATE_FRACTION,
            "after_step": math.floor(outcome.late_window_start(config["train"]["steps"])),
        },
        # What the lesson's TF1 code printed for a diverged network: the argmax of NaN logits
        # is class 0, so its "accuracy" is the share of class 0 in the validation split.
        "tf1_diverged_val_accuracy": float((validation_labels == 0).mean()),
        # Always answering the commonest class: "near chance" is less than NEAR_CHANCE_MARGIN above it.
        "chance_val_accuracy": chance,
        "variants": variants,
        "arms": [arm.as_dict() for arm in arms.of(config) if arm.name in variants],
    }
