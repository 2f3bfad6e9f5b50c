"""A run directory on disk: its file names, and how one is claimed, staged and put in place.

Everything that names a file of a run, or decides whether a directory may be written,
lives here. A run is written into a hidden staging directory beside its final place,
`.<name>.partial-<pid>`, and renamed into place only when every file is there, so an
interrupted run never leaves anything that looks complete, and `summary.json` in a run
directory always means the run finished.

Claiming is atomic: the checks (is the place free, may --force replace what is there,
is another run writing it) and the creation of the staging directory happen under an
exclusive lock on the parent directory, and a live staging directory is the claim that
other runs respect. The lock is held for milliseconds only, and the kernel drops it if
the process dies; a staging directory whose process is gone is stale and removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path

from bn_lab.config import FIELDS, name_problem, shown
from bn_lab.files import OutputError, cannot_write
from bn_lab.sweeps.spec import Axis, SweepError

# The two networks of a pair, as every file of a run names them.
VARIANTS = ("without_bn", "with_bn")

# The files of a run directory (every name is here and nowhere else).
CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
METRICS = "metrics.csv"
SUMMARY = "summary.json"  # written last: its presence means the run finished
ACCURACY_PLOT = "accuracy.png"
TENSORBOARD = "tensorboard"
DIAGNOSTICS = "diagnostics.csv"  # what BN does inside the network (bn_lab.diagnostics, bn_lab.landscape)
DIAGNOSTICS_PLOT = "diagnostics.png"
LANDSCAPE_PLOT = "landscape.png"  # with diagnostics.landscape
PAPER_FIG1_PLOT = "paper_fig1.png"  # with diagnostics.paper_figure
WEIGHTS = "weights.npz"  # every network's weights and population statistics after training: <variant>/layer<k>/<name>
RUN_ENTRIES = (
    CONFIG,
    ENVIRONMENT,
    METRICS,
    SUMMARY,
    WEIGHTS,
    ACCURACY_PLOT,
    TENSORBOARD,
    DIAGNOSTICS,
    DIAGNOSTICS_PLOT,
    LANDSCAPE_PLOT,
    PAPER_FIG1_PLOT,
)
LATEST = "latest"

# A sweep directory: one run directory per cell, and these.
MANIFEST = "sweep.json"  # the sweep's definition and cell list, written at its start
FAILURES = "failed.json"  # cells whose run raised, with the error
SWEEP_LOCK = ".lock"  # held (flock) by the one sweep writing the directory
SUMMARY_CSV = "summary.csv"  # the report: one row per finished cell
REPORT = "report.md"  # the report: one row per grid point, over seeds
HEATMAP = "heatmap.png"
CURVES = "curves.png"
MECHANISM = "mechanism.png"  # the relu bad-init cells' effective learning rate and dead units

# metrics.csv: one row per (variant, step, split).
METRICS_COLUMNS = ["variant", "step", "split", "loss", "accuracy", "top_class_share"]
VALIDATION = "validation"  # the validation split, inference mode with the EMA population statistics
PRECISE_BN = "validation_precise_bn"  # the same with exact population statistics (the BN network)
TRAIN_BATCH = "train_batch"  # the current training batch, inference mode (the conv net's log)
TEST = "test"  # the test split: after training (and every train.test_every steps)
# diagnostics.csv: long form; layer counts hidden layers from 1 ("all": the whole network).
DIAGNOSTICS_COLUMNS = ["variant", "step", "layer", "quantity", "value"]
UNIT_PERCENTILES = ("unit_p15", "unit_p50", "unit_p85")  # its quantities for one unit's input percentiles

_STAGING = re.compile(r"\.(?P<name>.+)\.(?P<kind>partial|unpack|replaced)-(?P<pid>\d+)")


class RunDirError(Exception):
    """The run directory cannot be used (taken, not ours, being written); worded for the user."""


def is_complete(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SUMMARY).is_file()


def load_summary(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / SUMMARY).read_text())


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine still runs (the owner of a staging directory).

    A zombie is dead: a killed sweep's workers stay zombies where nobody reaps them (a
    container whose PID 1 does not), and kill(pid, 0) still succeeds for them.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc (not Linux): kill(pid, 0) is all we know
        return True
    return state not in ("Z", "X")


def _unknown_entries(directory: Path) -> list[str]:
    """Entries that no bn_lab run writes (hidden temporary files of an atomic write excepted)."""
    return sorted(
        p.name for p in directory.iterdir() if p.name not in RUN_ENTRIES and not re.fullmatch(r"\..+\.tmp", p.name)
    )


def replaceable(directory: Path) -> str | None:
    """None if --force may replace `directory` (empty, or a bn_lab run), else what was found there.

    --force replaces only what bn_lab wrote: a directory holding nothing but a run's files
    (config.yaml and summary.json or environment.json among them). Anything else, a user's
    own files or a sweep, is never deleted.
    """
    entries = list(directory.iterdir())
    if not entries:
        return None
    unknown = _unknown_entries(directory)
    if unknown:
        shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
        return f"it holds {shown}, which no bn_lab run writes"
    names = {p.name for p in entries}
    if CONFIG not in names or not names & {SUMMARY, ENVIRONMENT}:
        return "it is not a bn_lab run (no config.yaml with summary.json or environment.json)"
    return None


def _live_writer(parent: Path, name: str) -> int | None:
    """The pid of another live process staging `name` in `parent`; removes stale staging dirs."""
    writer = None
    for staging in parent.glob(f".{glob_escape(name)}.*-*"):
        match = _STAGING.fullmatch(staging.name)
        if not match or match["name"] != name or not staging.is_dir():
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and pid_alive(pid):
            writer = pid
        else:  # killed, or left by this very process: nobody will finish it
            shutil.rmtree(staging, ignore_errors=True)
    return writer


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


@contextlib.contextmanager
def _locked(parent: Path):
    """An exclusive lock on a directory, for the few milliseconds a claim takes."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _make_parent(parent: Path) -> None:
    for ancestor in (parent, *parent.parents):
        if ancestor.exists() or ancestor.is_symlink():
            if not ancestor.is_dir():
                raise OutputError(f"{parent}: cannot write ({ancestor} is a file, not a directory)")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cannot_write(parent, e) from None


def check_location(run_dir: Path) -> None:
    """Refuses places a run can never be renamed into: the current directory or one of its parents."""
    try:
        resolved, here = run_dir.resolve(), Path.cwd().resolve()
    except OSError as e:
        raise cannot_write(run_dir, e) from None
    if resolved == here or resolved in here.parents:
        raise RunDirError(
            f"{run_dir}: is the current directory or contains it; a run needs a directory of its own, "
            "e.g. --out results/my_run"
        )


class Claim:
    """A run directory claimed by this process: write into `staging`, then `commit()`.

    Used as a context manager, it removes the staging directory if the block raises
    (Ctrl-C included), so nothing incomplete is left, and commits if it does not.
    """

    def __init__(self, run_dir: Path, staging: Path):
        self.run_dir, self.staging = run_dir, staging

    def commit(self) -> Path:
        """Puts the staged run at run_dir; an old run (empty, or --force) is set aside first and removed after."""
        old = None
        try:
            if self.run_dir.exists():
                old = self.run_dir.parent / f".{self.run_dir.name}.replaced-{os.getpid()}"
                os.replace(self.run_dir, old)
            os.replace(self.staging, self.run_dir)
        except OSError as e:
            raise cannot_write(self.run_dir, e) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.run_dir

    def abandon(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.commit()
            return
        self.abandon()
        if isinstance(error, OutputError):  # name the place the user asked for, not the hidden staging one
            raise OutputError(str(error).replace(str(self.staging), str(self.run_dir))) from None


def _stage(run_dir: Path) -> Claim:
    staging = run_dir.parent / f".{run_dir.name}.partial-{os.getpid()}"
    try:
        staging.mkdir()
    except OSError as e:  # a read-only file system, a full disk, no permission
        raise cannot_write(run_dir, e) from None
    return Claim(run_dir, staging)


def claim(run_dir: str | Path, force: bool = False) -> Claim:
    """Claims exactly `run_dir` (the user's --out, a sweep cell), before anything slow starts."""
    run_dir = Path(run_dir)
    check_location(run_dir)
    if run_dir.name in ("", ".", ".."):
        raise RunDirError(f"{run_dir}: not a directory name a run can be written to")
    _make_parent(run_dir.parent)
    with _locked(run_dir.parent):
        writer = _live_writer(run_dir.parent, run_dir.name)
        if writer is not None:
            raise RunDirError(f"{run_dir}: another bnlab run (pid {writer}) is writing it; wait for it or use --out")
        if run_dir.exists() or run_dir.is_symlink():
            if not run_dir.is_dir() or run_dir.is_symlink():
                raise RunDirError(f"{run_dir}: exists and is not a directory")
            if any(run_dir.iterdir()):
                if not force:
                    raise RunDirError(
                        f"{run_dir}: already holds a run; use --force to replace it or --out to write elsewhere"
                    )
                problem = replaceable(run_dir)
                if problem:
                    raise RunDirError(f"{run_dir}: --force replaces only a bn_lab run, and {problem}")
        return _stage(run_dir)


def claim_new(results_root: str | Path, experiment: str, seed: int) -> Claim:
    """Claims a new results/<experiment>/<YYYYmmdd-HHMMSS>-seed<seed>[-N]; never one another run has."""
    parent = Path(results_root) / experiment
    _make_parent(parent)
    stem = f"{timestamp()}-seed{seed}"
    with _locked(parent):
        for n in range(1, 10_000):
            run_dir = parent / (stem if n == 1 else f"{stem}-{n}")
            if not (run_dir.exists() or run_dir.is_symlink()) and _live_writer(parent, run_dir.name) is None:
                return _stage(run_dir)
    raise RunDirError(f"{parent}: no free run directory name for {stem}")  # 10,000 runs in one second


def new_directory(parent: str | Path, stem: str) -> Path:
    """Creates and returns parent/stem, or parent/stem-2, -3, ...: one that no other process has."""
    parent = Path(parent)
    _make_parent(parent)
    for n in range(1, 10_000):
        candidate = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            candidate.mkdir()  # atomic: of two processes, one creates it and the other moves on
        except FileExistsError:
            continue
        except OSError as e:
            raise cannot_write(candidate, e) from None
        return candidate
    raise RunDirError(f"{parent}: no free directory name for {stem}")


def timestamp() -> str:
    """The time part of a new run directory's name."""
    return time.strftime("%Y%m%d-%H%M%S")


def remove_stale(directory: Path) -> None:
    """Hidden staging directories in `directory` whose process is gone (killed runs and sweeps)."""
    for staging in directory.glob(".*.*-*"):
        match = _STAGING.fullmatch(staging.name)
        if match and staging.is_dir() and not pid_alive(int(match["pid"])):
            shutil.rmtree(staging, ignore_errors=True)


def unpack_staging(run_dir: Path) -> Path:
    """A fresh hidden directory beside run_dir for a run that arrives packed (a Ray task's)."""
    staging = run_dir.parent / f".{run_dir.name}.unpack-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def point_latest(run_dir: Path) -> None:
    """<parent>/latest: a one-line text file naming the newest run directory beside it.

    A file, not a symlink to the directory: TensorBoard follows directory links, so
    `tensorboard --logdir results/` listed every latest run twice. `bn_lab.load()` follows it;
    in a shell: cd "results/<experiment>/$(cat results/<experiment>/latest)".
    """
    from bn_lab import files

    try:
        files.write_text(run_dir.parent / LATEST, run_dir.name + "\n")
    except OutputError:  # a convenience only; the run itself is complete
        pass


def follow_latest(path: Path) -> Path:
    """The run directory a `latest` pointer names; any other path as it is."""
    if path.name == LATEST and path.is_file() and not path.is_symlink():
        return path.parent / path.read_text().strip()
    return path


__all__ = ["Claim", "OutputError", "RunDirError", "claim", "claim_new", "is_complete", "load_summary"]


# --- a sweep's manifest ------------------------------------------------------------------


def load_manifest(sweep_dir: str | Path) -> dict:
    """A sweep's sweep.json, checked: a damaged one is one line, not a KeyError later."""
    path = Path(sweep_dir) / MANIFEST
    if not Path(sweep_dir).is_dir():
        raise SweepError(f"{sweep_dir}: no such directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{sweep_dir}: not a sweep directory (no {MANIFEST}; `bnlab sweep` writes it)") from None
    except (OSError, ValueError) as e:
        raise SweepError(f"{path}: unreadable ({e})") from None
    problem = manifest_problem(manifest)
    if problem:
        raise SweepError(f"{path}: not a bn_lab sweep manifest ({problem}); rerun `bnlab sweep` to rewrite it")
    return manifest


# What a report reads of sweep.json: checked first, so a damaged file is one line, not a KeyError.
_CELL_KEYS = {"name": str, "point": str, "seed": int, "indices": list, "grid": dict, "config_digest": str}
_AXIS_KEYS = {"key": str, "values": list}


def manifest_problem(manifest) -> str | None:
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    for key, kind in (("name", str), ("axes", list), ("cells", list), ("seeds", list)):
        if not isinstance(manifest.get(key), kind):
            return f"'{key}' must be a {kind.__name__}"
    for i, axis in enumerate(manifest["axes"]):
        if problem := _axis_problem(axis):
            return f"axes[{i}] {problem}"
    for i, cell in enumerate(manifest["cells"]):
        if not isinstance(cell, dict) or any(not isinstance(cell.get(k), t) for k, t in _CELL_KEYS.items()):
            return f"cells[{i}] needs {', '.join(_CELL_KEYS)}"
        if len(cell["indices"]) != len(manifest["axes"]) or not all(
            isinstance(j, int) and 0 <= j < len(a["values"]) for j, a in zip(cell["indices"], manifest["axes"])
        ):
            return f"cells[{i}].indices do not fit the axes"
        if any(not isinstance(cell["grid"].get(a["key"]), str) for a in manifest["axes"]):
            return f"cells[{i}].grid must give every axis's value"
        if name_problem(cell["name"]):
            return f"cells[{i}].name is not a directory name"
    if not isinstance(manifest.get("base"), str):  # the report's heading names the base config
        return "'base' must be a str"
    if not isinstance(manifest.get("set") or {}, dict):
        return "'set' must be an object"
    return None


def _axis_problem(axis) -> str | None:
    shaped = isinstance(axis, dict) and "labels" in axis
    if not shaped or any(not isinstance(axis.get(k), t) for k, t in _AXIS_KEYS.items()):
        return f"needs {', '.join(_AXIS_KEYS)}, labels"
    if axis["key"] not in FIELDS:
        return f"key {shown(axis['key'])} is not a config key"
    labels = axis["labels"]
    if labels is not None and not (
        isinstance(labels, list) and len(labels) == len(axis["values"]) and all(isinstance(n, str) for n in labels)
    ):
        return "labels must be null or list one name per value"
    try:  # the figures label rows and columns with the values' pieces of cell names
        named = Axis(axis["key"], tuple(axis["values"]), tuple(labels) if labels else None)
        for j in range(len(named.values)):
            named.fragment(j)
    except SweepError:
        return "has a value no cell name can hold"
    return None
