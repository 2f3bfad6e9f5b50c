"""Cells in local worker processes, `jobs` at a time; `--jobs 1` with a few cells runs them here.

One single-process executor per job slot, so that a slot's worker can be replaced after
CELLS_PER_WORKER cells (ProcessPoolExecutor's own max_tasks_per_child deadlocks on Python
3.11-3.13: python/cpython#115634). TensorFlow's intra-op pool is pinned
(runtime.NUMERIC_THREADS), so the numbers do not depend on --jobs; each process keeps
runtime.PAIR_THREADS inter-op threads to train the pair at once (measured on 2 cores:
2 processes x 2 inter-op threads beat 1 inter-op thread each).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import warnings

from bn_lab import runtime  # runtime imports TensorFlow only in configure()
from bn_lab.config.yaml_io import SweepError
from bn_lab.sweeps import executors
from bn_lab.sweeps.cell import CELLS_PER_WORKER, run_cell
from bn_lab.sweeps.executors import inprocess

# A worker process starts by importing its parent's script (multiprocessing's spawn); a script
# that calls bn_lab at its top level would start the sweep again in each worker, which fails.
SCRIPT_NEEDS_A_GUARD = (
    'a script using jobs > 1 needs `if __name__ == "__main__":` around its bn_lab calls: '
    "each worker process imports the script, and would start the sweep again"
)
IMPORTED_THE_SCRIPT = 78  # the exit status of such a worker


def refuse_in_a_worker_start() -> None:
    """Called where the API starts a run or a sweep: a worker process still starting (importing its
    parent's script) says why it cannot, in one line, and ends with IMPORTED_THE_SCRIPT, which the
    sweep turns into the same sentence."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):  # spawn's flag while it prepares
        print(f"error: {SCRIPT_NEEDS_A_GUARD}", file=sys.stderr, flush=True)
        os._exit(IMPORTED_THE_SCRIPT)


class Executor(executors.Executor):
    def __init__(self, jobs: int = 1, address: str | None = None):
        super().__init__(jobs, address)
        cores = os.cpu_count() or 1
        if jobs > cores:
            warnings.warn(
                f"--jobs {jobs} is more than this machine's {cores} cores: cells will run slower, not faster "
                f"(each trains on {runtime.NUMERIC_THREADS} threads)",
                stacklevel=3,
            )

    def run(self, tasks, finished, progress="none") -> None:
        if len(tasks) <= 1 or (self.jobs == 1 and len(tasks) <= CELLS_PER_WORKER):
            # Not worth a process: a worker pays TensorFlow's import (~5 s) before its first cell.
            inprocess.Executor().run(tasks, finished, progress)
            return
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        queue = list(tasks)
        slots = [_new_worker() for _ in range(min(self.jobs, len(tasks)))]  # never more processes than cells
        served = [0] * len(slots)
        running = {}  # future -> (slot, task)

        started = []  # every worker process, to read how it ended

        def start_next(slot: int) -> None:
            task = queue.pop(0)
            running[slots[slot].submit(_pool_cell, task)] = (slot, task)
            started.extend(p for p in _processes([slots[slot]]) if p not in started)

        interrupted = False
        try:
            for slot in range(len(slots)):
                start_next(slot)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    slot, task = running.pop(future)
                    error = future.exception()
                    if isinstance(error, BrokenProcessPool) and _imported_the_script(started):
                        raise SweepError(SCRIPT_NEEDS_A_GUARD)  # every cell would fail so: the sweep stops
                    finished(task, None if error else future.result(), error)  # raises if the sweep must stop
                    served[slot] += 1
                    if queue and (served[slot] >= CELLS_PER_WORKER or isinstance(error, BrokenProcessPool)):
                        slots[slot].shutdown(wait=True)
                        slots[slot], served[slot] = _new_worker(), 0
                    if queue:
                        start_next(slot)
        except KeyboardInterrupt:
            # Ctrl-C in a terminal reaches the workers too; a SIGTERM or a `kill -INT` reaches
            # only this process: pass it on, so that each cell removes its staging directory and ends.
            interrupted = True
            for process in _processes(slots):
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGINT)
            raise
        finally:
            _stop(slots, interrupted)


# How long interrupted workers get to clean up. One interrupted while it imports TensorFlow can
# hang in that import's half-started threads (seen under load); it is killed, and its staging
# directory, hidden and never complete, is removed by the sweep (staging.remove_stale).
STOP_SECONDS = 30


def _imported_the_script(processes) -> bool:
    """Whether a worker ended because it found itself importing a script without a guard."""
    for process in processes:
        process.join(5)  # the pool found it gone; its status is there within moments
    return any(process.exitcode == IMPORTED_THE_SCRIPT for process in processes)


def _processes(slots) -> list:
    return [process for worker in slots for process in list(getattr(worker, "_processes", {}).values())]


def _stop(slots, interrupted: bool) -> None:
    processes = _processes(slots)
    for worker in slots:
        worker.shutdown(wait=not interrupted, cancel_futures=True)
    if not interrupted:
        return
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(5)


def _new_worker():
    """A process for cells. Spawned, never forked: TensorFlow's threads and state do not survive a fork."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )


def _worker_init(parent_pid: int) -> None:
    """A pool worker: Ctrl-C interrupts a cell (see _pool_cell), and it dies with the sweep.

    A killed sweep (kill -9) cannot stop its workers; left alone they would go on training
    and rename runs into place behind the back of the next sweep. On Linux the kernel kills
    them with the sweep; elsewhere a thread notices within a second.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runtime.own_process()
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch_parent():
        while os.getppid() == parent_pid:  # also covers a sweep that died before prctl above
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True).start()


# The first SIGINT (Ctrl-C, or the sweep forwarding its SIGTERM) stops the cell; a second one must
# not interrupt the cleanup that removes its staging directory.
_interrupt_once = runtime.interrupting(KeyboardInterrupt, once=True)


def _pool_cell(task) -> float:
    signal.signal(signal.SIGINT, _interrupt_once)  # interruptible while training only
    try:
        return run_cell(task)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
