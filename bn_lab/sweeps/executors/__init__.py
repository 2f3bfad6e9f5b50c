"""Where a sweep's cells run, behind one small interface (registry.EXECUTORS).

An executor is a class `Executor(jobs, address)`, used as a context manager (entering it
connects to whatever it needs, before the sweep writes anything, so that a missing
cluster is an error up front), with `run(tasks, finished, progress)`: run every task
(cell.Task) and call `finished(task, seconds, error)` once per task as it ends, error
None for success. An error that must stop the sweep is raised by `finished`; the executor
lets it through and cleans up its workers.

Adding one (say, Slurm) is one new file here and one line in registry.EXECUTORS.
"""

from __future__ import annotations

from collections.abc import Callable

from bn_lab.sweeps.cell import Task

Finished = Callable[[Task, "float | None", "BaseException | None"], None]


class Executor:
    """The interface, and the defaults: nothing to connect to."""

    def __init__(self, jobs: int = 1, address: str | None = None):
        self.jobs, self.address = jobs, address

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def run(self, tasks: list[Task], finished: Finished, progress: str = "none") -> None:
        raise NotImplementedError
