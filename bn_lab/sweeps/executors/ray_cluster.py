"""Cells as Ray tasks: on a cluster at --ray-address ($RAY_ADDRESS), or a local one for the sweep's lifetime.

A cell runs into a temporary directory on its worker and comes back as a tar.gz, unpacked
here atomically: no shared disk needed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import tarfile
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from bn_lab.config.yaml_io import SweepError
from bn_lab.store import callers, claims, rundir
from bn_lab.sweeps import executors
from bn_lab.sweeps.cell import CELLS_PER_WORKER, run_cell

CELL_CPUS = 1  # Ray CPUs per cell: like --jobs 2 on 2 cores (a cell's own threads: 2 intra-op + 2 inter-op)
RAY_EXTRA = "the ray executor needs the optional extra: pip install 'bn_lab[ray]'"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SweepError(RAY_EXTRA) from None
    return ray


class Executor(executors.Executor):
    """Ray, connected on entering: to the address, $RAY_ADDRESS or a new local cluster."""

    def __enter__(self):
        ray = _import_ray()
        self._started = False
        if ray.is_initialized():  # the caller's own session (a notebook, a test): use it, leave it
            return self
        address = self.address or os.environ.get("RAY_ADDRESS")  # as Ray's own tools do
        options = dict(logging_level=logging.ERROR, log_to_driver=False)  # bnlab's lines, and Ray's errors
        # ray.init puts its own SIGTERM handler in (exit 1 with its dump, and none of bnlab's lines):
        # bnlab's goes back, and stopping the sweep stops the cluster through __exit__.
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            if address:
                _check_reachable(address)
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"--ray-address {address}" if address else "a local Ray cluster"
            raise SweepError(f"{where}: cannot start or connect to Ray ({str(e).splitlines()[0]})") from None
        finally:
            if sigterm is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, sigterm)
        self._started = True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._started:
            _import_ray().shutdown()

    def run(self, tasks, finished, progress="none") -> None:
        ray = _import_ray()
        # Ray workers are reused across cells, so each pays TensorFlow's import once, and
        # replaced after CELLS_PER_WORKER cells, like the local executor's.
        remote = ray.remote(num_cpus=CELL_CPUS, max_retries=0, max_calls=CELLS_PER_WORKER)(run_packed)
        refs = {remote.remote(task): task for task in tasks}
        try:
            pending = list(refs)
            while pending:
                [ref], pending = ray.wait(pending, num_returns=1)
                task = refs[ref]
                try:
                    unpack_run(ray.get(ref), Path(task.run_dir), task.force, task.options)
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    finished(task, None, cause if isinstance(cause, BaseException) else RuntimeError(str(e)))
                except Exception as e:  # noqa: BLE001 - a lost worker, a bad archive: recorded, the sweep goes on
                    finished(task, None, e)
                else:
                    finished(task, rundir.load_summary(task.run_dir)["wall_seconds"], None)
        except BaseException:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise


def run_packed(task) -> bytes:
    """A Ray task: the cell into a local temporary directory, returned as a tar.gz (no shared disk)."""
    with tempfile.TemporaryDirectory(prefix="bnlab-cell-") as tmp:
        run_dir = Path(tmp) / task.name
        run_cell(replace(task, run_dir=str(run_dir), force=False))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(run_dir, arcname=".")
        return buffer.getvalue()


def unpack_run(
    packed: bytes, run_dir: Path, force: bool = False, options: callers.CallerOptions = callers.SWEEP_COMMAND
) -> None:
    """A packed run into run_dir, atomically: claimed as a local cell is (a damaged, incomplete
    or, with force, changed cell of this sweep is replaced; nothing else), unpacked into the
    claim's staging directory, checked, then renamed."""
    with claims.claim(run_dir, force, cell_of_a_sweep=True, options=options) as claim:
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
            tar.extractall(claim.staging, filter="data")
        if not rundir.is_complete(claim.staging):
            raise RuntimeError(f"the returned run has no {rundir.SUMMARY}")


def _check_reachable(address: str) -> None:
    """Fails fast on a host:port nobody listens on (Ray itself retries for minutes)."""
    import socket

    match = re.fullmatch(r"([\w.-]+):(\d+)", address)
    if not match:  # "auto", "ray://...": Ray's own forms, left to Ray
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=10).close()
    except OSError as e:
        raise SweepError(f"--ray-address {address}: cannot reach a Ray cluster there ({e.strerror or e})") from None
