"""Cells one after another in this process (`--jobs 1` with a few cells, and debugging)."""

from __future__ import annotations

import time

from bn_lab.sweeps import executors
from bn_lab.sweeps.cell import run_cell


class Executor(executors.Executor):
    def run(self, tasks, finished, progress="none") -> None:
        for task in tasks:
            started = time.perf_counter()
            try:
                seconds = run_cell(task, progress)
            except Exception as e:  # noqa: BLE001 - a failed cell is recorded; the sweep goes on
                finished(task, time.perf_counter() - started, e)
            else:
                finished(task, seconds, None)
