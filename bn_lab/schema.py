"""What a run's files hold: the networks they name, the splits and columns of its tables, the
keys every reader of its summary relies on, and the one reader of its CSV tables.

Where the files are, and how a run directory is claimed, is bn_lab.rundir's; this module says
what is in them. Pure Python: no TensorFlow.
"""

from __future__ import annotations

import csv
from pathlib import Path

from bn_lab.yaml_io import shown

# The two networks of a pair, as every file of a run names them.
VARIANTS = ("without_bn", "with_bn")

# metrics.csv: one row per (variant, step, split).
METRICS_COLUMNS = ["variant", "step", "split", "loss", "accuracy", "top_class_share"]
VALIDATION = "validation"  # the validation split, inference mode with the EMA population statistics
PRECISE_BN = "validation_precise_bn"  # the same with exact population statistics (the BN network)
TRAIN_BATCH = "train_batch"  # the current training batch, inference mode (the conv net's log)
TEST = "test"  # the test split: after training (and every train.test_every steps)
# diagnostics.csv: long form; layer counts hidden layers from 1 ("all": the whole network).
DIAGNOSTICS_COLUMNS = ["variant", "step", "layer", "quantity", "value"]
UNIT_PERCENTILES = ("unit_p15", "unit_p50", "unit_p85")  # its quantities for one unit's input percentiles

# What every reader of a network's summary relies on (the report, the sweep's progress line, the API).
SUMMARY_VARIANT_KEYS = ("outcome", "diverged", "diverged_at_step", "final_val_accuracy", "late_val_accuracy")


def read_table(path: str | Path, columns: list[str]) -> list[dict]:
    """A run's CSV table (metrics.csv, diagnostics.csv) as rows of strings, checked to have
    `columns` as its header: ValueError (or OSError) if it does not read back."""
    with open(path, newline="", encoding="utf-8") as f:
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


def summary_problem(summary) -> str | None:
    """None if a summary.json's content has what its readers rely on, else what it lacks."""
    if not isinstance(summary, dict):
        return f"a JSON {type(summary).__name__}, not an object"
    variants = summary.get("variants")
    if not isinstance(variants, dict) or not isinstance(summary.get("config_digest"), str):
        return "no variants or config_digest"
    for variant in VARIANTS:
        if not isinstance(variants.get(variant), dict) or any(k not in variants[variant] for k in SUMMARY_VARIANT_KEYS):
            return f"{variant} is missing or incomplete"
    return None


def metrics_problem(rows: list[dict]) -> str | None:
    """None if metrics.csv's rows (read_table) are a run's numbers, else the first that is not."""
    if not rows:
        return "no rows"
    for row in rows:
        try:
            if row["variant"] not in VARIANTS:
                raise ValueError
            int(row["step"])
            for column in METRICS_COLUMNS[3:]:
                float(row[column] or 0)
        except ValueError:
            return f"row {shown(list(row.values()), 40)}"
    return None
