"""Sweeps: a grid of paired runs, resumable, run in this process, in local processes or on Ray.

A sweep is a base config, a few grid axes (config key -> values) and seeds. Every cell
of the grid is exactly one `bnlab run` (`experiment.run_experiment`) into
results/<sweep>/<cell>/, with the same files. The whole grid is expanded and every
cell's config validated before anything trains.

Resuming needs no bookkeeping of its own: a run directory holds summary.json only if
the run finished (run_experiment renames it into place at the end), and its
config.yaml says what it ran. A cell is done iff both hold and the config matches.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import re
import shlex
import signal
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bn_lab import config as configs
from bn_lab import experiment, files, rundir, runtime  # runtime imports TensorFlow only in configure()

SWEEP_KEYS = ("name", "base", "set", "grid", "seeds")
# Keys a grid or `set:` may not touch: the sweep names its cells and owns the seeds.
RESERVED = {"experiment": "cells are named by the sweep", "seed": "list seeds under `seeds:` (or --seeds)"}
# TensorFlow never empties a process's XLA compilation cache (tensorflow/tensorflow#64170):
# measured here, each MLP cell leaves ~35 MB behind. So a sweep's cells run in worker
# processes that are replaced after this many cells (a replacement costs one import of
# TensorFlow, ~5 s); a worker then stays near the 1 GiB of a single run.
CELLS_PER_WORKER = 6
CELL_CPUS = 1  # Ray CPUs per cell: like --jobs 2 on 2 cores (a cell's own threads: 2 intra-op + 2 inter-op)
RAY_EXTRA = "the ray executor needs the optional extra: pip install 'bn_lab[ray]'"

# Cell states, as --dry-run shows them.
COMPLETE = "complete"  # finished, same config: skipped
TO_RUN = "to run"  # no run directory yet
INCOMPLETE = "incomplete"  # a directory without summary.json: replaced
CHANGED = "changed config"  # finished, but with another config: an error unless --force


class SweepError(configs.ConfigError):
    """A problem with a sweep definition or its results directory; worded for the user (one line)."""


# --- definition --------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One grid axis: a config key and its values, optionally named ({good: 0.05, bad: 5.0})."""

    key: str
    values: tuple  # validated config values, in the order given
    labels: tuple | None = None  # the names of named values

    def fragment(self, i: int) -> str:
        """This value's piece of a cell name: relu, lr2, lr1e-6, badinit, steps200.

        Exact, never rounded or rewritten: two different values never share a name, and a
        value that cannot be written in a name is an error asking to name the values.
        """
        value, leaf = self.values[i], self.key.rsplit(".", 1)[-1]
        if self.labels:
            text = self.labels[i] + self.key.split(".", 1)[0]
        elif isinstance(configs.FIELDS[self.key].kind, tuple):
            text = str(value)
        elif self.key == "optimizer.learning_rate":
            text = f"lr{_name_number(value)}"
        elif isinstance(value, bool):
            text = leaf if value else f"no_{leaf}"
        elif isinstance(value, (int, float)):
            text = f"{leaf}{_name_number(value)}"
        elif isinstance(value, list):
            text = leaf + "x".join(_name_number(v) for v in value)
        else:
            text = f"{leaf}{'none' if value is None else value}"
        if problem := configs.name_problem(text):
            if self.labels:  # only its length can be wrong
                raise SweepError(f"{self.key}: value name {configs.shown(self.labels[i])}: cell name {problem}")
            raise SweepError(
                f"{self.key}: value {_show(value)} cannot be part of a cell name; name the values, "
                f"e.g. {self.key}: {{a: ..., b: ...}}"
            )
        return text

    def display(self, i: int) -> str:
        """This value for people: `relu`, `2`, `bad (5)`."""
        text = _show(self.values[i])
        return f"{self.labels[i]} ({text})" if self.labels else text


def _name_number(value) -> str:
    """A number as a cell name writes it: exact (0.01, 2, 1e-06 -> 1e-6, 1e+06 -> 1e6), no '+'."""
    text = _show(value)
    return re.sub(r"e([+-]?)0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)


def _show(value) -> str:
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class Cell:
    name: str  # relu_lr2_badinit_seed1: results/<sweep>/<name>/
    point: str  # relu_lr2_badinit: the grid point, shared by its seeds; the config's `experiment`
    seed: int
    indices: tuple  # index of this cell's value on each axis
    config: dict = field(compare=False, repr=False)  # the resolved config


@dataclass
class Sweep:
    name: str
    source: str  # the sweep file, or the base config of an ad-hoc sweep
    base: str  # the base config
    settings: dict  # dotted key -> value applied to every cell (`set:` and --set)
    axes: list[Axis]
    seeds: list[int]
    cells: list[Cell]

    def grid_values(self, cell: Cell) -> dict:
        return {a.key: a.display(i) for a, i in zip(self.axes, cell.indices)}

    def manifest(self) -> dict:
        """What sweep.json holds: enough for `bnlab report` to know every cell, finished or not."""
        return {
            "name": self.name,
            "source": self.source,
            "base": self.base,
            "set": self.settings,
            "axes": [
                {"key": a.key, "values": list(a.values), "labels": list(a.labels) if a.labels else None}
                for a in self.axes
            ],
            "seeds": self.seeds,
            "cells": [
                {
                    "name": c.name,
                    "point": c.point,
                    "seed": c.seed,
                    "indices": list(c.indices),
                    "grid": self.grid_values(c),
                    "config_digest": configs.digest(c.config),
                }
                for c in self.cells
            ],
        }


def is_sweep_file(path: str | Path) -> bool:
    return _is_sweep(configs.read_yaml(path))


def _is_sweep(tree: dict) -> bool:
    """A sweep file has `grid:` (and `base:`); a run config has neither."""
    return "grid" in tree or "base" in tree


def load(
    path: str | Path,
    grid: tuple[str, ...] | list[str] = (),
    *,
    name: str | None = None,
    seeds: list[int] | None = None,
    overrides: dict | None = None,
) -> Sweep:
    """A sweep from a sweep file, or from a base config and `--grid key=v1,v2` arguments.

    name, seeds and overrides (--name, --seeds, --set) take precedence over the file.
    """
    if name is not None:  # before the files, so the error names the option
        _check_name(name, "--name")
    path = Path(path)
    tree = configs.read_yaml(path)
    if _is_sweep(tree):
        if grid:
            raise SweepError(f"{path} is a sweep file with its own grid; --grid is for a base config")
        return _from_file(path, tree, name, seeds, overrides or {})
    if not grid:
        raise SweepError(
            f"{path} is a run config, not a sweep file (it has no `grid:`); "
            "give axes with --grid KEY=V1,V2 or use `bnlab run`"
        )
    axes_spec = {}
    for text in grid:
        key, values = parse_grid_arg(text)
        if key in axes_spec:
            raise SweepError(f"--grid {key} is given twice")
        axes_spec[key] = values
    return _build(
        name=name,
        source=str(path),
        base=path,
        settings={},
        axes_spec=axes_spec,
        seeds=seeds,
        overrides=overrides or {},
        where="--grid",
    )


def _check_name(name, where: str) -> None:
    """The sweep's name is its results directory's: <results>/<name>/."""
    if not isinstance(name, str) or not name:
        raise SweepError(f"{where} must be a non-empty string, got {configs.shown(name)}")
    if problem := configs.name_problem(name):
        raise SweepError(f"{where} {problem}, got {configs.shown(name)}")


def _from_file(path: Path, tree: dict, name, seeds, overrides) -> Sweep:
    unknown = [k for k in tree if k not in SWEEP_KEYS]
    if unknown:
        raise SweepError(f"{path}: unknown key '{unknown[0]}'; a sweep file has: {', '.join(SWEEP_KEYS)}")
    if "grid" not in tree:
        raise SweepError(f"{path}: grid: is required, e.g. grid: {{model.activation: [relu, sigmoid]}}")
    if "base" not in tree or not isinstance(tree["base"], str):
        raise SweepError(f"{path}: base: the path of a base config is required (relative to the sweep file)")
    base = path.parent / tree["base"]
    if base.is_dir():
        raise SweepError(f"{path}: base: {base} is a directory; it must be a run config (a YAML file)")
    if not base.is_file():
        raise SweepError(f"{path}: base: {base} does not exist")
    if _is_sweep(configs.read_yaml(base)):
        raise SweepError(f"{path}: base: {base} is a sweep file; the base must be a run config (no grid:, no base:)")
    settings = tree.get("set") or {}
    if not isinstance(settings, dict):
        raise SweepError(f"{path}: set: must be a mapping of config keys to values")
    axes_spec = tree["grid"]
    if not isinstance(axes_spec, dict):
        raise SweepError(f"{path}: grid: must be a mapping of config keys to lists of values")
    file_seeds = tree.get("seeds")
    if seeds is None and file_seeds is not None:
        seeds = _check_seeds(file_seeds, f"{path}: seeds")
    return _build(
        name=name if name is not None else tree.get("name", path.stem),
        source=str(path),
        base=base,
        settings=configs.flatten(settings),
        axes_spec=axes_spec,
        seeds=seeds,
        overrides=overrides,
        where=f"{path}",
    )


def _build(*, name, source, base: Path, settings, axes_spec, seeds, overrides, where) -> Sweep:
    base_config = configs.load(base)  # its own errors name the base file
    if name is None:  # an ad-hoc grid
        name = f"{base_config['experiment']}_sweep"
    _check_name(name, f"{where}: name")
    for origin, keys in ((f"{where}: set", settings), ("--set", overrides)):
        for key in keys:
            if key in RESERVED:
                raise SweepError(f"{origin}: {key} cannot be set in a sweep: {RESERVED[key]}")
    tree = configs.apply_overrides(base_config, settings, f"{where}: set")
    configs.validate(tree, f"{where}: set")
    if overrides:
        tree = configs.apply_overrides(tree, overrides, "--set")
        configs.validate(tree, "--set")
    axes = [_axis(key, spec, tree, _grid_where(where)) for key, spec in axes_spec.items()]
    if not axes:
        raise SweepError(f"{where}: grid: needs at least one axis, e.g. model.activation: [relu, sigmoid]")
    seeds = [base_config["seed"]] if seeds is None else seeds
    fixed = {**settings, **overrides}
    cells = _expand(name, tree, axes, seeds, fixed, where)
    return Sweep(name, source, str(base), fixed, axes, list(seeds), cells)


def _grid_where(where: str) -> str:
    """How errors in a grid name it: `--grid`, or `<sweep file>: grid`."""
    return "--grid" if where == "--grid" else f"{where}: grid"


def _axis(key, spec, tree: dict, where: str) -> Axis:
    if not isinstance(key, str):
        raise SweepError(f"{where}: keys must be dotted config keys like model.activation, got {configs.shown(key)}")
    configs.check_key(key, where)  # a section (model) is not an axis, even over mappings of its keys
    if key in RESERVED:
        raise SweepError(f"{where}: {key} cannot be a grid axis: {RESERVED[key]}")
    if key == "description":
        raise SweepError(f"{where}: description cannot be a grid axis; the sweep describes each cell")
    if isinstance(spec, dict):
        labels, raw = tuple(str(k) for k in spec), list(spec.values())
        for label in labels:
            if problem := configs.name_problem(label):
                raise SweepError(f"{where}: {key}: value name {configs.shown(label)} {problem}")
    elif isinstance(spec, list):
        labels, raw = None, spec
    else:
        raise SweepError(
            f"{where}: {key}: must be a list of values or a mapping of names to values, got {configs.shown(spec)}"
        )
    if not raw:
        raise SweepError(f"{where}: {key}: empty axis; give at least one value")
    values = []
    for value in raw:
        # Each value through the config's own validation, so 2 becomes 2.0 for a float key
        # and a bad value is named here, with its key, before any cell is built.
        resolved = configs.validate(configs.apply_overrides(tree, {key: value}, where), where)
        values.append(configs.get(resolved, key))
    for i, value in enumerate(values):
        if value in values[:i]:
            raise SweepError(f"{where}: {key}: value {_show(value)} is listed twice")
    return Axis(key, tuple(values), labels)


def _expand(name: str, tree: dict, axes: list[Axis], seeds: list[int], fixed: dict, where: str) -> list[Cell]:
    import itertools

    cells, names = [], {}
    for indices in itertools.product(*(range(len(a.values)) for a in axes)):
        try:
            point = "_".join(a.fragment(i) for a, i in zip(axes, indices))
        except SweepError as e:
            raise SweepError(f"{_grid_where(where)}: {e}") from None
        described = ", ".join(f"{a.key}={a.display(i)}" for a, i in zip(axes, indices))
        for seed in seeds:
            cell_name = f"{point}_seed{seed}"
            if problem := configs.name_problem(cell_name):  # each fragment is a name: only the length is left
                raise SweepError(
                    f"{_grid_where(where)}: cell name {configs.shown(cell_name, 60)} {problem}; "
                    "name the values with short names, e.g. init.scale: {good: 0.05, bad: 5.0}"
                )
            if cell_name in names:
                raise SweepError(
                    f"{where}: two cells would both be named {cell_name} ({names[cell_name]} and {described}); "
                    "name the values of that axis, e.g. init.scale: {good: 0.05, bad: 5.0}"
                )
            names[cell_name] = described
            overrides = {a.key: a.values[i] for a, i in zip(axes, indices)}
            overrides.update(experiment=point, seed=seed)
            if "description" not in fixed:
                overrides["description"] = f"sweep {name}: {described}"
            config = configs.validate(configs.apply_overrides(tree, overrides), f"{where}: cell {cell_name}")
            cells.append(Cell(cell_name, point, seed, tuple(indices), config))
    return cells


def parse_grid_arg(text: str) -> tuple[str, Any]:
    """`key=v1,v2` -> (key, [v1, v2]); `key=good:0.05,bad:5` -> (key, {good: 0.05, bad: 5})."""
    if "=" not in text:
        raise SweepError(f"--grid {text}: expected KEY=V1,V2,..., e.g. --grid optimizer.learning_rate=0.01,1,2")
    key, raw = (part.strip() for part in text.split("=", 1))
    items = [item.strip() for item in _split_top_level(raw) if item.strip()]
    named = [re.fullmatch(r"([A-Za-z][A-Za-z0-9_.-]*):(\S.*)", item) for item in items]
    if items and all(named):
        return key, {m.group(1): _yaml_value(m.group(2)) for m in named}
    return key, [_yaml_value(item) for item in items]


def _split_top_level(text: str) -> list[str]:
    """Splits on commas outside brackets, so a list value like [100,100] stays whole."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _yaml_value(text: str):
    try:
        return configs.parse_yaml(text)
    except (yaml.YAMLError, ValueError, OverflowError):
        return text


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` -> [0, 1, 2]."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SweepError(f"--seeds {text}: expected comma-separated non-negative integers, e.g. --seeds 0,1,2") from None
    return _check_seeds(seeds, "--seeds")


def _check_seeds(seeds, where: str) -> list[int]:
    if not isinstance(seeds, list) or not seeds:
        raise SweepError(f"{where}: must be a non-empty list of non-negative integers, e.g. [0, 1, 2]")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SweepError(f"{where}: must be a non-empty list of non-negative integers, got {configs.shown(s)}")
        if s > configs.MAX_SEED:  # the config's own bound, said here with the list's name
            raise SweepError(f"{where}: a seed must be at most {configs.MAX_SEED:,}, got {s}")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"{where}: a seed is listed twice: {seeds}")
    return list(seeds)


def of_seeds(config: dict, seeds: list[int], *, name: str, source: str) -> Sweep:
    """One resolved config over several seeds (`bnlab run --seeds`): a sweep without grid axes, cells seed<N>."""
    seeds = _check_seeds(list(seeds), "--seeds")
    cells = [
        Cell(f"seed{seed}", config["experiment"], seed, (), configs.validate(configs.apply_overrides(config, {"seed": seed})))
        for seed in seeds
    ]
    return Sweep(name, source, source, {}, [], seeds, cells)


# --- state on disk ---------------------------------------------------------------------


def cell_state(cell: Cell, run_dir: Path) -> tuple[str, str]:
    """(state, detail): is this cell's run directory complete, and with this cell's config?"""
    if not run_dir.exists():
        return TO_RUN, ""
    if not rundir.is_complete(run_dir):
        return INCOMPLETE, f"no {rundir.SUMMARY}"
    try:
        saved = yaml.safe_load((run_dir / rundir.CONFIG).read_text())
    except (OSError, yaml.YAMLError):
        saved = None
    if not isinstance(saved, dict):
        return CHANGED, f"its {rundir.CONFIG} is missing or unreadable"
    if configs.digest(saved) == configs.digest(cell.config):
        return COMPLETE, ""
    old, new = configs.flatten(saved), configs.flatten(cell.config)
    differences = [f"{k}: {_show(old.get(k))} -> {_show(new.get(k))}" for k in new if old.get(k) != new.get(k)]
    differences += [f"{k}: {_show(old[k])} -> (unknown key)" for k in old if k not in new]
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
    size = f"{len(sweep.cells)} cells ({points} grid points x {len(sweep.seeds)} seeds)"
    lines = [f"sweep {sweep.name}: {size} in {sweep_dir}/"]
    for c, row in zip(sweep.cells, columns):
        state, detail = found[c.name]
        text = "  ".join(f"{v:<{w}}" for v, w in zip(row, widths))
        lines.append(f"  {text}  [{state}{': ' + detail if detail else ''}]")
    counts = {s: sum(1 for st, _ in found.values() if st == s) for s in (COMPLETE, TO_RUN, INCOMPLETE, CHANGED)}
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


# --- running one cell --------------------------------------------------------------------
# These run in the sweep's own process (--jobs 1, up to CELLS_PER_WORKER cells), in a
# pool worker, or in a Ray worker.

def _fatal_errors() -> tuple[type, ...]:
    """Problems that would be the same for every cell (no MNIST, no GPU): they stop the sweep."""
    from bn_lab.data import DataError
    from bn_lab.runtime import DeviceError

    return DataError, DeviceError


def run_cell(config: dict, run_dir: str, device: str, force: bool, progress: str, command_line: str) -> float:
    """Runs one cell into run_dir; returns its wall time in seconds."""
    started = time.perf_counter()
    try:
        with rundir.claim(run_dir, force) as claim:
            experiment.run_experiment(
                config, claim.staging, device=device, progress=progress, command_line=command_line
            )
    finally:
        # A finished trainer and TensorFlow's traced graphs, which capture its training
        # set, are reference cycles: without this, ~150 MB per cell waits for Python's
        # next full collection while the next cell runs (measured: 150 MB per cell of
        # growth without it, 35 MB with it, the XLA cache's).
        gc.collect()
    return time.perf_counter() - started


def _worker_init(parent_pid: int) -> None:
    """A pool worker: Ctrl-C interrupts a cell (see _pool_cell), and it dies with the sweep.

    A killed sweep (kill -9) cannot stop its workers; left alone they would go on training
    and rename runs into place behind the back of the next sweep. On Linux the kernel kills
    them with the sweep; elsewhere a thread notices within a second.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runtime.one_line_warnings()
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch_parent():
        while os.getppid() == parent_pid:  # also covers a sweep that died before prctl above
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True).start()


def _interrupt_once(signum, frame):
    # The first SIGINT (Ctrl-C, or the sweep forwarding its SIGTERM) stops the cell; a second
    # one must not interrupt the cleanup that removes its staging directory.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _pool_cell(*args) -> float:
    signal.signal(signal.SIGINT, _interrupt_once)  # interruptible while training only
    try:
        return run_cell(*args)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_cell_packed(config: dict, cell_name: str, device: str, command_line: str) -> bytes:
    """A Ray task: the cell into a local temporary directory, returned as a tar.gz (no shared disk)."""
    with tempfile.TemporaryDirectory(prefix="bnlab-cell-") as tmp:
        run_dir = Path(tmp) / cell_name
        run_cell(config, str(run_dir), device, False, "none", command_line)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(run_dir, arcname=".")
        return buffer.getvalue()


def unpack_run(packed: bytes, run_dir: Path) -> None:
    """A packed run into run_dir, atomically: unpacked beside it, checked, then renamed."""
    with rundir.Claim(run_dir, rundir.unpack_staging(run_dir)) as claim:
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
            tar.extractall(claim.staging, filter="data")
        if not rundir.is_complete(claim.staging):
            raise RuntimeError(f"the returned run has no {rundir.SUMMARY}")


# --- the sweep --------------------------------------------------------------------------


@dataclass
class SweepResult:
    sweep_dir: Path
    completed: list[str]  # cells complete now (skipped or run)
    skipped: list[str]
    failed: dict[str, str]  # cell -> one-line error
    report: str  # the report table, as printed


def _late_mean(variant_summary: dict) -> float:
    late = variant_summary["late_val_accuracy"]
    return late["mean"] if late else variant_summary["final_val_accuracy"]


class SweepProgress:
    """One bar for the sweep (cells done / total, elapsed, ETA) on a terminal; a line per cell in logs."""

    def __init__(self, total: int, done: int, mode: str, label: str):
        self.mode = ("bar" if sys.stderr.isatty() else "lines") if mode == "auto" else mode
        self.total, self.done, self.bar = total, done, None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=label, unit="cell", position=0, dynamic_ncols=True)

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        elif self.mode == "lines":
            print(line, flush=True)

    def cell_done(self, name: str, seconds: float | None, run_dir: Path, error: str | None = None) -> None:
        self.done += 1
        if error is not None:
            status = f"FAILED: {error}"
        else:
            v = rundir.load_summary(run_dir)["variants"]
            status = "  ".join(
                f"{experiment.VARIANT_SHORT[n]} "
                + (f"diverged at step {r['diverged_at_step']}" if r["diverged"] else f"{r['outcome']} {_late_mean(r):.4f}")
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
) -> SweepResult:
    """Runs every cell not complete yet, then writes the report; returns what happened.

    The cells go to sweep_dir, by default <results_root>/<sweep name>/.

    progress: "auto" (a bar on a terminal, a line per cell otherwise), "bar", "lines" or "none".
    """
    if executor not in ("local", "ray"):
        raise SweepError(f"--executor {executor}: unknown executor; allowed: local, ray")
    if jobs < 1:
        raise SweepError(f"--jobs {jobs}: must be >= 1")
    cores = os.cpu_count() or 1
    if executor == "local" and jobs > cores:
        warnings.warn(
            f"--jobs {jobs} is more than this machine's {cores} cores: cells will run slower, not faster "
            f"(each trains on {runtime.NUMERIC_THREADS} threads)",
            stacklevel=2,
        )
    sweep_dir = Path(sweep_dir) if sweep_dir is not None else Path(results_root) / sweep.name
    found = states(sweep, sweep_dir)
    changed = [name for name, (state, _) in found.items() if state == CHANGED]
    if changed and not force:
        first = f"{sweep_dir}/{changed[0]}"
        cells = f"{first} and {len(changed) - 1} more cells hold" if len(changed) > 1 else f"{first} holds"
        raise SweepError(
            f"{cells} a finished run of a different config ({found[changed[0]][1]}); "
            "use --force to rerun, or --name to write the sweep elsewhere"
        )
    todo = [c for c in sweep.cells if found[c.name][0] != COMPLETE]
    skipped = [c.name for c in sweep.cells if found[c.name][0] == COMPLETE]
    command_line = command_line if command_line is not None else shlex.join(sys.argv)
    failed: dict[str, str] = {}
    # Ray first: a missing extra or an unreachable cluster fails before anything is written.
    with _ray_session(ray_address) if executor == "ray" and todo else contextlib.nullcontext():
        with _exclusive(sweep_dir):
            rundir.remove_stale(sweep_dir)
            files.write_json(sweep_dir / rundir.MANIFEST, {**sweep.manifest(), "command_line": command_line})
            _run_cells(sweep, todo, skipped, sweep_dir, found, failed,
                       jobs=jobs, executor=executor, device=device, progress=progress, command_line=command_line)
            from bn_lab import report

            table = report.write_report(sweep_dir, threshold=threshold, figure=figure)
    completed = [c.name for c in sweep.cells if rundir.is_complete(sweep_dir / c.name) and c.name not in failed]
    return SweepResult(sweep_dir, completed, skipped, failed, table)


def _run_cells(sweep, todo, skipped, sweep_dir, found, failed, *, jobs, executor, device, progress, command_line):
    bar = SweepProgress(len(sweep.cells), len(skipped), progress, f"sweep {sweep.name}")
    if skipped and todo:
        bar.say(f"{len(skipped)} of {len(sweep.cells)} cells already complete: skipped")
    tracebacks: dict[str, str] = {}

    def finished(cell: Cell, seconds: float | None, error: BaseException | None):
        if error is None:
            bar.cell_done(cell.name, seconds, sweep_dir / cell.name)
            return
        if isinstance(error, _fatal_errors()):
            raise error
        failed[cell.name] = f"{type(error).__name__}: {error}".splitlines()[0]
        tracebacks[cell.name] = "".join(traceback.format_exception(error))
        bar.cell_done(cell.name, seconds, sweep_dir / cell.name, failed[cell.name])

    args = dict(sweep_dir=sweep_dir, found=found, device=device, command_line=command_line, finished=finished)
    try:
        if not todo:
            return
        if executor == "ray":
            _run_on_ray(todo, **args)
        elif len(todo) <= 1 or (jobs == 1 and len(todo) <= CELLS_PER_WORKER):
            _run_here(todo, cell_progress="bar" if bar.mode == "bar" else "none", **args)
        else:
            _run_in_pool(todo, jobs, **args)
    finally:
        bar.close()
        _record_failures(sweep_dir, sweep, failed, tracebacks)


def _force_for(found, cell: Cell) -> bool:
    # A changed config gets here only with --force; an incomplete directory is always replaced.
    return found[cell.name][0] in (INCOMPLETE, CHANGED)


def _run_here(todo, *, sweep_dir, found, device, command_line, finished, cell_progress):
    for cell in todo:
        started = time.perf_counter()
        try:
            seconds = run_cell(
                cell.config, str(sweep_dir / cell.name), device, _force_for(found, cell), cell_progress, command_line
            )
        except Exception as e:  # noqa: BLE001 - a failed cell is recorded; the sweep goes on
            finished(cell, time.perf_counter() - started, e)
        else:
            finished(cell, seconds, None)


def _run_in_pool(todo, jobs, *, sweep_dir, found, device, command_line, finished):
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    # One single-process executor per job slot, so that a slot's worker can be replaced
    # after CELLS_PER_WORKER cells (ProcessPoolExecutor's own max_tasks_per_child
    # deadlocks on Python 3.11-3.13: python/cpython#115634). TensorFlow's intra-op pool is
    # pinned (runtime.NUMERIC_THREADS), so the numbers do not depend on --jobs; each
    # process keeps runtime.PAIR_THREADS inter-op threads to train the pair at once (measured on
    # 2 cores: 2 processes x 2 inter-op threads beat 1 inter-op thread each).
    queue = list(todo)
    slots = [_new_worker() for _ in range(min(jobs, len(todo)))]  # never more processes than cells
    served = [0] * len(slots)
    running = {}  # future -> (slot, cell)

    def start_next(slot: int) -> None:
        cell = queue.pop(0)
        args = (cell.config, str(sweep_dir / cell.name), device, _force_for(found, cell), "none", command_line)
        running[slots[slot].submit(_pool_cell, *args)] = (slot, cell)

    try:
        for slot in range(len(slots)):
            start_next(slot)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                slot, cell = running.pop(future)
                error = future.exception()
                finished(cell, None if error else future.result(), error)  # raises if the sweep must stop
                served[slot] += 1
                if queue and (served[slot] >= CELLS_PER_WORKER or isinstance(error, BrokenProcessPool)):
                    slots[slot].shutdown(wait=True)
                    slots[slot], served[slot] = _new_worker(), 0
                if queue:
                    start_next(slot)
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches the workers too; a SIGTERM or a `kill -INT` reaches only
        # this process: pass it on, so that each cell removes its staging directory and ends.
        for worker in slots:
            for process in list(getattr(worker, "_processes", {}).values()):
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGINT)
        raise
    finally:
        for worker in slots:
            worker.shutdown(wait=True, cancel_futures=True)


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


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SweepError(RAY_EXTRA) from None
    return ray


@contextlib.contextmanager
def _ray_session(ray_address: str | None):
    """Ray, connected: to ADDR, $RAY_ADDRESS or a new local cluster that lives as long as the sweep."""
    import logging

    ray = _import_ray()
    if ray.is_initialized():  # the caller's own session (a notebook, a test): use it, leave it
        yield ray
        return
    ray_address = ray_address or os.environ.get("RAY_ADDRESS")  # as Ray's own tools do
    options = dict(logging_level=logging.WARNING, log_to_driver=False)
    try:
        if ray_address:
            _check_reachable(ray_address)
            ray.init(address=ray_address, **options)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"--ray-address {ray_address}" if ray_address else "a local Ray cluster"
        raise SweepError(f"{where}: cannot start or connect to Ray ({str(e).splitlines()[0]})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _run_on_ray(todo, *, sweep_dir, found, device, command_line, finished):
    ray = _import_ray()

    # Ray workers are reused across cells, so each pays TensorFlow's import once, and
    # replaced after CELLS_PER_WORKER cells, like the pool's.
    task = ray.remote(num_cpus=CELL_CPUS, max_retries=0, max_calls=CELLS_PER_WORKER)(run_cell_packed)
    refs = {task.remote(cell.config, cell.name, device, command_line): cell for cell in todo}
    try:
        pending = list(refs)
        while pending:
            [ref], pending = ray.wait(pending, num_returns=1)
            cell = refs[ref]
            try:
                unpack_run(ray.get(ref), sweep_dir / cell.name)
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                finished(cell, None, cause if isinstance(cause, BaseException) else RuntimeError(str(e)))
            except Exception as e:  # noqa: BLE001 - a lost worker, a bad archive: recorded, the sweep goes on
                finished(cell, None, e)
            else:
                finished(cell, rundir.load_summary(sweep_dir / cell.name)["wall_seconds"], None)
    except BaseException:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise


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


def _record_failures(sweep_dir: Path, sweep: Sweep, failed: dict, tracebacks: dict) -> None:
    """failed.json: this sweep's failed cells with their errors; cells that since finished drop out."""
    path = sweep_dir / rundir.FAILURES
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
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
