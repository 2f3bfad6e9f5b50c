"""A run's TensorBoard event files: one writer per variant under tensorboard/<variant>/, each
starting with the arm's hyperparameters (TensorBoard's HParams dashboard: `tensorboard --logdir`
on a sweep's directory shows every cell's arms in its table and parallel coordinates, with their
validation and test accuracy and loss as metrics).

Written with TensorBoard's own protobuf writer, not TensorFlow's summary ops: the
diagnostics of one evaluation are ~30 scalars and a histogram per layer, and as eager
summary ops they took ~50 ms per network and evaluation (as a traced function, ~2 ms
plus ~0.7 s of tracing per network); this way they take ~5 ms and need no tracing
(measured with scripts/bench.py's overhead runs).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.hparams.summary_v2 import hparams_pb
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from bn_lab.config import loading as configs
from bn_lab.store import rundir

# Recorded for every arm, beside every key the config sets away from its default (what a sweep
# varies): the hyperparameters a course compares.
HPARAM_KEYS = (
    "experiment",
    "seed",
    "model.name",
    "model.activation",
    "init.distribution",
    "init.scale",
    "optimizer.name",
    "optimizer.learning_rate",
    "train.batch_size",
    "train.steps",
)


def hyperparameters(config: dict, arm) -> dict:
    """What the HParams dashboard shows of one arm of a run: HPARAM_KEYS, every key set away from its
    default (lists as text), the arm, its normalizer and each of its options."""
    flat, defaults = configs.flatten(config), configs.flatten(configs.defaults())
    chosen = {k: v for k, v in flat.items() if k in HPARAM_KEYS or (k in defaults and v != defaults[k])}
    values = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in chosen.items() if v is not None}
    values["arm"] = arm.name
    values["normalizer"] = arm.normalizer or "none"
    values.update(
        {f"normalizer.{k}": v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in arm.options.items()}
    )
    return values


class EventWriters:
    def __init__(self, workdir: Path, variants, hparams: dict[str, dict] | None = None, trial: str = "run"):
        """hparams: {variant: its hyperparameters} (hyperparameters()), written first; trial: how the
        HParams dashboard names the run (each arm `<trial>/<arm>`)."""
        self.writers = {v: EventFileWriter(str(Path(workdir) / rundir.TENSORBOARD / v)) for v in variants}
        for variant, values in (hparams or {}).items():
            summary = hparams_pb(values, trial_id=f"{trial}/{variant}")
            self.writers[variant].add_event(event_pb2.Event(step=0, wall_time=time.time(), summary=summary))

    def _add(self, variant: str, step: int, values: list) -> None:
        summary = summary_pb2.Summary(value=values)
        self.writers[variant].add_event(event_pb2.Event(step=step, wall_time=time.time(), summary=summary))

    def write(self, step: int, evaluations, measurements: dict) -> None:
        """evaluations: results.Evaluation; measurements: {variant: (diagnostics rows, per-layer activation inputs)}."""
        values = {}
        for e in evaluations:
            values.setdefault(e.variant, []).extend(
                scalar_pb(f"{e.split}/{name}", np.float32(x)).value[0]
                for name, x in (("accuracy", e.accuracy), ("loss", e.loss))
            )
        for variant, (rows, histograms) in measurements.items():
            found = values.setdefault(variant, [])
            found.extend(
                scalar_pb(f"diagnostics/layer{r['layer']}/{r['quantity']}", np.float32(r["value"])).value[0]
                for r in rows
            )
            found.extend(
                histogram_pb(f"activation_input/layer{layer}", h).value[0]
                for layer, h in enumerate(histograms, start=1)
            )
        for variant, found in values.items():
            self._add(variant, step, found)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
