"""Runs a sweep: every cell not complete yet, by the chosen executor, then the report.

Resuming needs no bookkeeping of its own: a run directory holds summary.json only if the
run finished (run_experiment renames it into place at the end), and its config.yaml says
what it ran. A cell is done iff both hold and the config matches.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from bn_lab import registry
from bn_lab.config import arms
from bn_lab.config import loading as configs
from bn_lab.config.user_text import counted, listed, printable
from bn_lab.config.yaml_io import ConfigError, SweepError, read_yaml
from bn_lab.disk import files
from bn_lab.report import sweep_report as report
from bn_lab.report import sweep_results
from bn_lab.store import callers, rundir, staging
from bn_lab.store.sweep_manifest import show
from bn_lab.sweeps import manifest as manifests
from bn_lab.sweeps.cell import Task
from bn_lab.sweeps.spec import Cell, Sweep
from bn_lab.training import preflight

# How much of each changed value --dry-run shows.
VALUE_LIMIT = 60
# Cell states, as --dry-run shows them.
COMPLETE = "complete"  # finished, same config: skipped
TO_RUN = "to run"  # no run directory yet
INCOMPLETE = "incomplete"  # a directory without summary.json: replaced
DAMAGED = "damaged"  # finished once, but its files do not read back: replaced
CHANGED = "changed config"  # finished, but with another config: an error unless --force


def cell_state(cell: Cell, run_dir: Path) -> tuple[str, str]:
    """(state, detail): is this cell's run directory complete, and with this cell's config?"""
    if not run_dir.exists():
        return TO_RUN, ""
    problem = rundir.run_problem(run_dir)
    if problem == rundir.NOT_FINISHED:
        return INCOMPLETE, problem
    if problem:
        return DAMAGED, problem
    try:  # as every config is read: no aliases, bounded, one error for anything else
        saved = read_yaml(run_dir / rundir.CONFIG)
        same = configs.digest(saved) == configs.digest(cell.config)
    except (ConfigError, TypeError, ValueError):  # TypeError: values JSON cannot hold (a date)
        return CHANGED, f"its {rundir.CONFIG} is missing or unreadable"
    if same:
        return COMPLETE, ""
    old, new = configs.flatten(saved), configs.flatten(cell.config)

    # Each value bounded and escaped: a value can be a list of arms with long labels.
    def value(flat: dict, k: str) -> str:
        return printable(show(flat[k]), VALUE_LIMIT) if k in flat else "(not set)"

    differences = [f"{k}: {value(old, k)} -> {value(new, k)}" for k in {**old, **new} if old.get(k) != new.get(k)]
    return CHANGED, "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")


def states(sweep: Sweep, sweep_dir: Path) -> dict[str, tuple[str, str]]:
    return {c.name: cell_state(c, sweep_dir / c.name) for c in sweep.cells}


def describe(sweep: Sweep, sweep_dir: Path) -> str:
    """What --dry-run prints: every cell, its grid values and whether it is done."""
    found = states(sweep, sweep_dir)
    columns = [
        [c.name] + [f"{k}={v}" for k, v in sweep.grid_values(c).items()] + [f"seed={c.seed}"] for c in sweep.cells
    ]
    widths = [max(len(row[i]) for row in columns) for i in range(len(columns[0]))]
    points = len(sweep.cells) // len(sweep.seeds)
    size = (
        f"{counted(len(sweep.cells), 'cell')} ({counted(points, 'grid point')} x {counted(len(sweep.seeds), 'seed')})"
    )
    lines = [f"sweep {sweep.name}: {size} in {sweep_dir}/"]
    for c, row in zip(sweep.cells, columns):
        state, detail = found[c.name]
        text = "  ".join(f"{v:<{w}}" for v, w in zip(row, widths))
        lines.append(f"  {text}  [{state}{': ' + detail if detail else ''}]")
    counts = {
        s: sum(1 for st, _ in found.values() if st == s) for s in (COMPLETE, TO_RUN, INCOMPLETE, DAMAGED, CHANGED)
    }
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


@contextlib.contextmanager
def _exclusive(sweep_dir: Path):
    """One sweep at a time per results directory; the OS drops the lock if we are killed."""
    import fcntl

    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        lock = open(sweep_dir / rundir.SWEEP_LOCK, "a+")
    except OSError as e:
        raise files.cannot_write(sweep_dir, e) from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"{sweep_dir}: another bnlab sweep is writing there; wait for it or stop it") from None
        yield


# --- running ---------------------------------------------------------------------------


def _fatal_errors() -> tuple[type, ...]:
    """Problems that would be the same for every cell (no MNIST, no GPU): they stop the sweep."""
    from bn_lab.data.datasets import DataError
    from bn_lab.runtime import DeviceError

    return DataError, DeviceError


def _late(variant_summary: dict) -> str:
    """The late accuracy of a progress line; a dash where the evaluations gave none (logits not numbers)."""
    late = sweep_results.figure_of(variant_summary, "late")
    return "—" if late is None else f"{late:.4f}"


@dataclass
class SweepResult:
    sweep_dir: Path
    completed: list[str]  # cells complete now (skipped or run)
    skipped: list[str]
    failed: dict[str, str]  # cell -> one-line error
    report: str  # the report table, as printed
    planned: int = 0  # the sweep's cells

    @property
    def problem(self) -> str | None:
        """None if every cell completed; else what did not, in one line (the CLI's error, the API's exception)."""
        if not self.failed and len(self.completed) >= self.planned:
            return None
        failed = listed(list(self.failed), 10) or "none"
        return (
            f"{self.planned - len(self.completed)} of {self.planned} cells did not complete (failed: {failed}; "
            f"errors in {self.sweep_dir / rundir.FAILURES}); run it again to retry them"
        )


class SweepProgress:
    """One bar for the sweep (cells done / total, elapsed, ETA) on a terminal; a line per cell in logs."""

    def __init__(self, total: int, done: int, mode: str, label: str):
        self.mode = ("bar" if sys.stderr.isatty() else "lines") if mode == "auto" else mode
        self.total, self.done, self.bar = total, done, None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=label, unit="cell", position=0, dynamic_ncols=True)

    def say(self, line: str) -> None:
        try:
            if self.bar is not None:
                self.bar.write(line)
            elif self.mode == "lines":
                print(line, flush=True)
        except OSError:  # standard output took no more (a full disk, a closed pipe): the sweep goes on, silent
            self.mode, self.bar = "none", None

    def cell_done(self, name: str, seconds: float | None, run_dir: Path, error: str | None = None) -> None:
        self.done += 1
        found = rundir.read_finished(run_dir) if error is None else None
        if error is not None:
            status = f"FAILED: {error}"
        elif isinstance(found, str):  # changed since it finished (deleted, edited): said, the sweep goes on
            status = f"finished, but its files no longer read back ({found})"
        else:
            finished = found[0]
            v, style = finished["variants"], arms.recorded(finished)
            status = "  ".join(
                f"{style[n]['short'] if n in style else n} "
                + (f"diverged at step {r['diverged_at_step']}" if r["diverged"] else f"{r['outcome']} {_late(r)}")
                for n, r in v.items()
            )
            status = f"late val acc {status}"
        took = f"  ({seconds:.1f} s)" if seconds is not None else ""
        self.say(f"[{self.done}/{self.total}] {name}  {status}{took}")
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_sweep(
    sweep: Sweep,
    results_root: str | Path = "results",
    *,
    sweep_dir: str | Path | None = None,
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    device: str = "auto",
    force: bool = False,
    progress: str = "auto",
    threshold: float = 0.9,
    figure: str = "late",
    command_line: str | None = None,
    options: callers.CallerOptions = callers.SWEEP_COMMAND,
    wide: bool = False,
) -> SweepResult:
    """Runs every cell not complete yet, then writes the report; returns what happened.

    The cells go to sweep_dir, by default <results_root>/<sweep name>/. executor: a name in
    registry.EXECUTORS. progress: "auto" (a bar on a terminal, a line per cell otherwise),
    "bar", "lines" or "none". options: how messages name the caller's options (callers.CallerOptions).
    wide: the table returned is report.md's whole one, not the one narrowed to a terminal's width.
    """
    if executor not in registry.EXECUTORS:
        raise SweepError(f"--executor {executor}: unknown executor; allowed: {', '.join(registry.EXECUTORS)}")
    if jobs < 1:
        raise SweepError(f"--jobs {jobs}: must be >= 1")
    sweep_results.check_options(threshold, figure)  # the report comes after training: its options are checked before
    preflight.check([(c.config, c.name) for c in sweep.cells], device)  # every cell, before any starts
    runner = registry.EXECUTORS.get(executor)(jobs=jobs, address=ray_address)
    sweep_dir = Path(sweep_dir) if sweep_dir is not None else Path(results_root) / sweep.name
    command_line = command_line if command_line is not None else shlex.join(sys.argv)
    manifest = {**sweep.manifest(), "command_line": command_line}
    manifests.check_place(sweep_dir, manifest, force, options)  # again under the claim's lock: here to fail first
    found = states(sweep, sweep_dir)
    changed = [name for name, (state, _) in found.items() if state == CHANGED]
    if changed and not force:
        first = f"{sweep_dir}/{changed[0]}"
        cells = f"{first} and {len(changed) - 1} more cells hold" if len(changed) > 1 else f"{first} holds"
        raise SweepError(
            f"{cells} a finished run of a different config ({found[changed[0]][1]}); "
            f"use {options.force} to rerun, or {options.write_elsewhere}"
        )
    # A changed config gets here only with --force; an incomplete or damaged directory is always replaced.
    replaced = (INCOMPLETE, DAMAGED, CHANGED)
    todo = [
        Task(c.name, c.config, str(sweep_dir / c.name), found[c.name][0] in replaced, device, command_line, options)
        for c in sweep.cells
        if found[c.name][0] != COMPLETE
    ]
    skipped = [c.name for c in sweep.cells if found[c.name][0] == COMPLETE]
    failed: dict[str, str] = {}
    # The executor first: a missing extra or an unreachable cluster fails before anything is written.
    with manifests.claimed(sweep_dir, manifest, force, options), runner if todo else contextlib.nullcontext():
        with _exclusive(sweep_dir):
            staging.remove_stale(sweep_dir)
            files.write_json(sweep_dir / rundir.MANIFEST, manifest)
            _run_cells(sweep, todo, skipped, sweep_dir, failed, runner, progress)
            table = report.write_report(sweep_dir, threshold=threshold, figure=figure, wide=wide)
    completed = [c.name for c in sweep.cells if rundir.is_complete(sweep_dir / c.name) and c.name not in failed]
    return SweepResult(sweep_dir, completed, skipped, failed, table, len(sweep.cells))


def _run_cells(sweep: Sweep, todo: list[Task], skipped, sweep_dir: Path, failed: dict, runner, progress: str) -> None:
    bar = SweepProgress(len(sweep.cells), len(skipped), progress, f"sweep {sweep.name}")
    if skipped and todo:
        bar.say(f"{len(skipped)} of {len(sweep.cells)} cells already complete: skipped")
    tracebacks: dict[str, str] = {}

    def finished(task: Task, seconds: float | None, error: BaseException | None):
        if error is None:
            bar.cell_done(task.name, seconds, Path(task.run_dir))
            return
        if isinstance(error, _fatal_errors()):
            raise error
        failed[task.name] = printable(f"{type(error).__name__}: {error}".splitlines()[0], 300)
        tracebacks[task.name] = "".join(traceback.format_exception(error))
        bar.cell_done(task.name, seconds, Path(task.run_dir), failed[task.name])

    try:
        if todo:
            runner.run(todo, finished, progress="bar" if bar.mode == "bar" else "none")
    finally:
        bar.close()
        staging.remove_stale(sweep_dir)  # a worker killed when it would not stop leaves its staging directory
        _record_failures(sweep_dir, sweep, failed, tracebacks)


def _record_failures(sweep_dir: Path, sweep: Sweep, failed: dict, tracebacks: dict) -> None:
    """failed.json: this sweep's failed cells with their errors; cells that since finished drop out."""
    path = sweep_dir / rundir.FAILURES
    try:
        earlier = files.read_json(path)
    except (OSError, ValueError):
        earlier = {}
    if not isinstance(earlier, dict):  # damaged (e.g. a list): rewritten from this sweep's failures
        earlier = {}
    names = {c.name for c in sweep.cells}
    records = {
        name: record
        for name, record in earlier.items()
        if name in names and name not in failed and not rundir.is_complete(sweep_dir / name)
    }
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    records.update({name: {"error": failed[name], "traceback": tracebacks[name], "at": when} for name in failed})
    if records:
        files.write_json(path, records)
    else:
        path.unlink(missing_ok=True)
