"""What a run's files hold: the arms they name, the splits and columns of its tables, the
keys every reader of its summary relies on, and the one reader of its CSV tables.

Where the files are, and how a run directory is claimed, is bn_lab.store.rundir's; this module says
what is in them. Pure Python: no TensorFlow.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from bn_lab.config import arms
from bn_lab.config.yaml_io import shown
from bn_lab.disk.files import open_regular

# A network's outcome, as summary.json's `outcome` records it (bn_lab.report.outcome says which).
LEARNED, NEAR_CHANCE, COLLAPSED, DIVERGED = "learned", "near chance", "collapsed", "diverged"
OUTCOMES = (LEARNED, NEAR_CHANCE, COLLAPSED, DIVERGED)

# metrics.csv: one row per (variant, step, split); `variant` is the arm's name (bn_lab.config.arms).
METRICS_COLUMNS = ["variant", "step", "split", "loss", "accuracy", "top_class_share"]
VALIDATION = "validation"  # the validation split, inference mode with the EMA population statistics
PRECISE_BN = "validation_precise_bn"  # the same with exact population statistics (the BN network)
# The same in training mode, on validation batches of the training batch size (bn_lab.training.evaluation).
BATCH_STATS = "validation_batch_stats"


@dataclass(frozen=True)
class OtherStatistics:
    """One of the validation split's two evaluations beside the EMA's, an arm with population statistics."""

    split: str  # metrics.csv's split
    section: str  # summary.json's section of the arm's figures
    short: str  # progress lines, the report's columns
    long: str  # the printed table's rows, figures' legends
    linestyle: str  # figures draw it beside the EMA's solid line


OTHER_STATISTICS = {
    o.split: o
    for o in (
        OtherStatistics(PRECISE_BN, "precise_bn", "exact stats", "exact population statistics", "--"),
        OtherStatistics(BATCH_STATS, "batch_stats", "batch stats", "batch statistics", ":"),
    )
}
TRAIN_BATCH = "train_batch"  # the current training batch, inference mode (the conv net's log)
# The training steps' own loss and accuracy (training mode, on the batches they trained on), the
# mean over the steps since the previous validation evaluation: recorded at each one, at no cost.
TRAINING_STEPS = "training_steps"
TEST = "test"  # the test split: after training (and every train.test_every steps)
# diagnostics.csv: long form; layer counts hidden layers from 1 ("all": the whole network).
DIAGNOSTICS_COLUMNS = ["variant", "step", "layer", "quantity", "value"]
UNIT_PERCENTILES = ("unit_p15", "unit_p50", "unit_p85")  # its quantities for one unit's input percentiles
# The same unit's percentiles in training mode (bn_lab.probes.ics): what the next layer sees while training.
TRAINING_UNIT_PERCENTILES = ("train_unit_p15", "train_unit_p50", "train_unit_p85")

# The landscape probe's rows (layer "all"; bn_lab.probes.landscape): each quantity drawn, with the
# low and high edges of its band over the step sizes (landscape.png).
LANDSCAPE_BANDS = {
    "loss_variation": ("loss_min", "loss_max"),
    "gradient_predictiveness": ("gradient_change_min", "gradient_predictiveness"),
    "beta_smoothness": ("beta_smoothness_min", "beta_smoothness"),
}

# What every reader of a network's summary relies on (the report, the sweep's progress line, the API).
SUMMARY_VARIANT_KEYS = ("outcome", "diverged", "diverged_at_step", "final_val_accuracy", "late_val_accuracy")


def read_table(path: str | Path, columns: list[str]) -> list[dict]:
    """A run's CSV table (metrics.csv, diagnostics.csv) as rows of strings, checked to have
    `columns` as its header: ValueError (or OSError) if it does not read back."""
    with open_regular(path, text=True) as f:  # a FIFO in its place must not block the reader
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header != columns:
                raise ValueError("its header is not bn_lab's")
            rows = []
            for row in reader:
                if len(row) != len(columns):
                    raise ValueError(f"row {shown(row, 40)}")
                rows.append(dict(zip(columns, row)))
        except csv.Error as e:
            raise ValueError(str(e)) from None
    return rows


# The types of what the readers of summary.json take from it (the report, its figures, the API),
# checked before any of them reads it: a damaged cell is named, never a traceback later.
_NUMBER, _NUMBER_OR_NONE, _INT_OR_NONE = "a number", "a number or null", "an integer or null"
_FIGURE = {"mean": _NUMBER_OR_NONE, "min": _NUMBER_OR_NONE, "max": _NUMBER_OR_NONE}
_BEST = {"accuracy": _NUMBER_OR_NONE, "step": _INT_OR_NONE}
_OTHER_STATISTICS = {  # an arm's figures with exact or with batch statistics
    "final_val_accuracy": _NUMBER_OR_NONE,
    "late_val_accuracy": (_FIGURE, None),
    "best_val_accuracy": (_BEST, None),
}
SUMMARY_TYPES = {
    "config_digest": str,
    "seed": int,
    "activation": str,
    "init_scale": _NUMBER,
    "wall_seconds": _NUMBER,
    "variants": dict,
}
VARIANT_TYPES = {
    "outcome": OUTCOMES,
    "diverged": bool,
    "diverged_at_step": _INT_OR_NONE,
    "final_val_accuracy": _NUMBER_OR_NONE,
    "late_val_accuracy": (_FIGURE, None),
    "best_val_accuracy": (_BEST, None),
    "top_class_share": _NUMBER_OR_NONE,
    "test_accuracy": _NUMBER_OR_NONE,
    "single_sample": {"inference": _NUMBER_OR_NONE, "training": _NUMBER_OR_NONE},
    "steps_per_second": _NUMBER_OR_NONE,
    "diagnostics": (dict, None),
    "covariate_shift": (
        {
            "band_motion": _NUMBER_OR_NONE,
            "band_motion_relative": _NUMBER_OR_NONE,  # None too in a summary from before it was recorded
            "ics_l2": _NUMBER_OR_NONE,
            "ics_relative": _NUMBER_OR_NONE,
            "ics_cosine": _NUMBER_OR_NONE,
        },
        None,
    ),
    **{o.section: (_OTHER_STATISTICS, None) for o in OTHER_STATISTICS.values()},
    "batch_size_curve": (
        # inference_mode: one per size, on that size's images (a number in runs before issue 33)
        {"sizes": list, "training_mode": list, "inference_mode": (list, _NUMBER), "good_from": _INT_OR_NONE},
        None,
    ),
}
# written only when the run measured them
_OPTIONAL = ("diagnostics", *(o.section for o in OTHER_STATISTICS.values()), "batch_size_curve", "covariate_shift")


def _type_problem(value, kind) -> str | None:
    if isinstance(kind, tuple) and kind is not OUTCOMES:  # alternatives: (a mapping, None)
        problems = [_type_problem(value, k) for k in kind if k is not None]
        return None if (value is None and None in kind) or None in problems else problems[0]
    if kind is OUTCOMES:
        return None if value in OUTCOMES else f"must be one of {', '.join(OUTCOMES)}"
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return "must be an object"
        for key, inner in kind.items():
            if problem := _type_problem(value.get(key), inner):
                return f"{key} {problem}"
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        _NUMBER: number,
        _NUMBER_OR_NONE: number or value is None,
        _INT_OR_NONE: value is None or (isinstance(value, int) and not isinstance(value, bool)),
    }.get(kind)
    if ok is None:  # a Python type
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        return None if ok else f"must be {'an' if kind is int else 'a'} {kind.__name__}"
    return None if ok else f"must be {kind}"


def summary_problem(summary) -> str | None:
    """None if a summary.json's content has what its readers rely on, in the types they read."""
    if not isinstance(summary, dict):
        return f"a JSON {type(summary).__name__}, not an object"
    for key, kind in SUMMARY_TYPES.items():
        if problem := "is missing" if key not in summary else _type_problem(summary[key], kind):
            return f"{key} {problem}"
    names = arm_names(summary)
    if isinstance(names, str):
        return names
    for variant in names:
        found = summary["variants"].get(variant)
        if not isinstance(found, dict) or any(k not in found for k in SUMMARY_VARIANT_KEYS):
            return f"{variant} is missing or incomplete"
        for key, kind in VARIANT_TYPES.items():
            if key not in found:
                if key in _OPTIONAL:
                    continue
                return f"{variant}.{key} is missing"
            if problem := _type_problem(found[key], kind):
                return f"{variant}.{key} {problem}"
    return None


def arm_names(summary: dict) -> list[str] | str:
    """The arms a summary says the run trained (a summary from before arms were recorded: the
    lesson's pair), or what is wrong with its `arms`."""
    if "arms" not in summary:
        return list(arms.LESSON_NAMES)
    given = summary["arms"]
    if (
        not isinstance(given, list)
        or not given
        or any(not isinstance(a, dict) or not isinstance(a.get("name"), str) for a in given)
    ):
        return "arms must be a non-empty list of arms with names"
    if any(not isinstance(a.get(key), str) for a in given for key in ("label", "short", "color")):
        return "arms: each needs a label, short and color"
    # What its readers show of them, as the config allows it (the color is checked where it is
    # drawn: a figure that fails costs nothing else).
    for a in given:
        for key in ("label", "short"):
            if problem := arms.STYLE_PROBLEMS[key](a[key]):
                return f"arms: a {key} {problem}"
    return [a["name"] for a in given]


def metrics_problem(rows: list[dict], names: list[str] | None = None) -> str | None:
    """None if metrics.csv's rows (read_table) are the numbers of a run of these arms (default:
    the lesson's pair), else the first row that is not."""
    names = names or arms.LESSON_NAMES
    if not rows:
        return "no rows"
    for row in rows:
        try:
            if row["variant"] not in names:
                raise ValueError
            int(row["step"])
            float(row["loss"]), float(row["accuracy"])  # NaN and inf are numbers: a diverged loss
            float(row["top_class_share"] or 0)  # empty for a training batch
        except ValueError:
            return f"row {shown(list(row.values()), 40)}"
    return None
