"""One cell of a sweep: exactly one `bnlab run` (experiment.run_experiment) into its run directory.

Every executor runs cells through run_cell, in this process, a worker process or a Ray worker.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

from bn_lab.store import callers, claims
from bn_lab.training import experiment

# TensorFlow never empties a process's XLA compilation cache (tensorflow/tensorflow#64170): each
# cell leaves some behind (docs/performance.md). So the executors run cells in worker processes
# that are replaced after this many cells (a replacement costs one import of TensorFlow); a
# worker then stays near the memory of a single run.
CELLS_PER_WORKER = 6


@dataclass(frozen=True)
class Task:
    """A cell to run, with everything a worker needs (it is pickled to other processes)."""

    name: str  # the cell's name: its directory's under the sweep
    config: dict  # the resolved config
    run_dir: str
    force: bool  # replace what is there (an incomplete run, or a changed config with --force)
    device: str
    command_line: str
    options: callers.CallerOptions = callers.SWEEP_COMMAND  # how its messages name the sweep's options


def run_cell(task: Task, progress: str = "none") -> float:
    """Runs one cell into its run directory; returns its wall time in seconds."""
    started = time.perf_counter()
    try:
        with claims.claim(task.run_dir, task.force, cell_of_a_sweep=True, options=task.options) as claim:
            experiment.run_experiment(
                task.config, claim.staging, device=task.device, progress=progress, command_line=task.command_line
            )
    finally:
        # A finished trainer and TensorFlow's traced graphs, which capture its training
        # set, are reference cycles: without this, they wait for Python's next full
        # collection while the next cell runs (docs/performance.md).
        gc.collect()
    return time.perf_counter() - started
