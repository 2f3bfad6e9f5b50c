"""Where a run's wall time goes: seconds per kind of work, accumulated with `timed(kind)` and recorded
in summary.json's `timings` (scripts/bench.py breaks a run down from it; docs/performance.md)."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

# The kinds, in the order a run meets them (summary.json keeps this order; what no kind covers is "other").
KINDS = (
    "start_up",  # TensorFlow, the data, the networks: everything before the first evaluation
    "training_steps",  # the steps themselves, compiling included
    "validation",  # inference mode on the validation split, every arm, every evaluation
    "exact_statistics",  # estimating them and evaluating with them
    "batch_statistics",  # training-mode evaluation on validation batches
    "test_during_training",  # train.test_every
    "training_batch",  # train.train_eval_every
    "diagnostics",  # every probe: the diagnostics, landscape, ICS, branch variance
    "final_checks",  # after training: validation, test, single images, the batch-size curve
    "files_and_figures",  # metrics.csv, weights.npz, summary.json and the figures drawn on the main thread
)


class Timers:
    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def timed(self, kind: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[kind] += time.perf_counter() - started

    def recorded(self, wall_seconds: float) -> dict[str, float]:
        """{kind: seconds} in KINDS' order, then "other": what the wall holds beyond them."""
        found = {kind: round(self.seconds[kind], 3) for kind in KINDS if kind in self.seconds}
        found["other"] = round(max(0.0, wall_seconds - sum(self.seconds.values())), 3)
        return found
