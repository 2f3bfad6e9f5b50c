"""A run directory on disk: its file names, what a finished run holds (run_problem), whether a
directory is bn_lab's to replace, and `latest`. How a directory is claimed, staged and put in
place is bn_lab.store.claims.

Everything that names a file of a run lives here. A run is written into a hidden staging
directory beside its final place, `.<name>.partial-<pid>` (STAGING), and renamed into place only
when every file is there, so `summary.json` in a run directory always means the run finished.
"""

from __future__ import annotations

import re
from pathlib import Path

from bn_lab.config.user_text import listed  # noqa: F401 - what rundir's users take from it
from bn_lab.config.yaml_io import shown
from bn_lab.disk.files import OutputError, read_json, read_regular
from bn_lab.store import schema

# The files of a run directory (every name is here and nowhere else).
CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
METRICS = "metrics.csv"
SUMMARY = "summary.json"  # written last: its presence means the run finished
ACCURACY_PLOT = "accuracy.png"
TENSORBOARD = "tensorboard"
DIAGNOSTICS = "diagnostics.csv"  # what BN does inside the network (bn_lab.probes.diagnostics, bn_lab.probes.landscape)
DIAGNOSTICS_PLOT = "diagnostics.png"
LANDSCAPE_PLOT = "landscape.png"  # with diagnostics.landscape
PAPER_FIG1_PLOT = "paper_fig1.png"  # with diagnostics.paper_figure
COVARIATE_SHIFT_PLOT = "covariate_shift.png"  # with diagnostics.ics
RESIDUAL_VARIANCE_PLOT = "residual_variance.png"  # with diagnostics.residual
BATCH_SIZE_PLOT = "batch_size_curve.png"  # arms with batch statistics: training mode by evaluation batch size
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
    COVARIATE_SHIFT_PLOT,
    RESIDUAL_VARIANCE_PLOT,
    BATCH_SIZE_PLOT,
)
LATEST = "latest"
# The names `latest` may hold: a run's directory (`<time>-seed<N>`) or a --seeds sweep's.
RUN_ID = re.compile(r"\d{8}-\d{6}-seeds?[\d_]+(-and-\d+-more)?(-\d+)?")

# A sweep directory: one run directory per cell, and these.
MANIFEST = "sweep.json"  # the sweep's definition and cell list, written at its start
FAILURES = "failed.json"  # cells whose run raised, with the error
SWEEP_LOCK = ".lock"  # held (flock) by the one sweep writing the directory
SUMMARY_CSV = "summary.csv"  # the report: one row per finished cell
REPORT = "report.md"  # the report: one row per grid point, over seeds
HEATMAP = "heatmap.png"
CURVES = "curves.png"
MECHANISM = "mechanism.png"  # the relu bad-init cells' effective learning rate and dead units
ALONG_AXIS = "along_axis.png"  # accuracy against a numeric axis (learning rate, group size), each evaluation mode

# Hidden directories beside a directory being written: a run's staging (partial), an old run set
# aside while --force replaces it (replaced), and a sweep's claim on its directory (sweep), each
# with its pid. The name alone proves nothing (a user may name a folder so): bn_lab writes
# STAGING_MARK into each, naming it, and removes only a directory whose mark names it.
STAGING = re.compile(r"\.(?P<name>.+)\.(?P<kind>partial|replaced|sweep)-(?P<pid>\d+)")
STAGING_MARK = ".bnlab-staging"
# Inside a `replaced` directory: the old run (put back if the commit never finished), or, once the
# new run is in place, the same renamed for deletion.
REPLACED_RUN, DELETED_RUN = "run", "deleting"


# bn_lab.disk.files' temporary file of a write under way: .<one of bn_lab's file names>.<mkstemp's 8>.tmp
# (a user's own .notes.tmp is the user's).
_ATOMIC_TEMPORARY = re.compile(
    r"\.(?:"
    + "|".join(
        re.escape(name)
        for name in (
            *RUN_ENTRIES,
            *(MANIFEST, FAILURES, SUMMARY_CSV, REPORT, HEATMAP, CURVES, MECHANISM, ALONG_AXIS, LATEST, STAGING_MARK),
        )
    )
    + r")\.[a-z0-9_]{8}\.tmp"
)


def staging_mark(directory: Path) -> dict:
    """What bn_lab writes into a hidden directory of its own (STAGING_MARK): it names the directory."""
    return {"bn_lab": "staging", "directory": directory.name}


def is_marked_staging(directory: Path) -> bool:
    """Whether `directory` is a hidden directory bn_lab made (named as STAGING, holding its mark):
    the only kind bn_lab ever removes or counts as another process's claim."""
    if not STAGING.fullmatch(directory.name) or not directory.is_dir() or directory.is_symlink():
        return False
    try:
        return read_json(directory / STAGING_MARK) == staging_mark(directory)
    except (OSError, ValueError):
        return False


def is_staging(path: Path) -> bool:
    """Whether `path` is one of bn_lab's hidden directories beside a directory being written (or an
    atomic write's temporary file); any other hidden file (.git, .env, a run renamed by its
    owner) is the user's."""
    return is_marked_staging(path) or bool(_ATOMIC_TEMPORARY.fullmatch(path.name))


class RunDirError(Exception):
    """The run directory cannot be used (taken, not ours, being written); worded for the user."""


def is_complete(run_dir: str | Path) -> bool:
    """A finished run whose files read back (run_problem)."""
    return run_problem(run_dir) is None


def load_summary(run_dir: str | Path) -> dict:
    return read_json(Path(run_dir) / SUMMARY)


NOT_FINISHED = f"no {SUMMARY}"  # run_problem's answer for a run that never finished


def _json_object(path: Path) -> dict:
    value = read_json(path)
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value


def run_problem(run_dir: str | Path) -> str | None:
    """None if run_dir holds a finished run whose summary.json and metrics.csv read back (their
    content as bn_lab.store.schema says); else what is wrong, in a few words (NOT_FINISHED if it never
    finished). A damaged run is no result."""
    found = read_finished(run_dir)
    return found if isinstance(found, str) else None


def read_finished(run_dir: str | Path) -> tuple[dict, list[dict]] | str:
    """A finished run's summary.json and metrics.csv's rows, each read once and checked (what a
    reader then uses is what was checked: a file deleted meanwhile cannot fail it later); or what
    is wrong (run_problem's words)."""
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY).is_file():
        return NOT_FINISHED
    try:
        summary = read_json(run_dir / SUMMARY)
        problem = schema.summary_problem(summary)
    except FileNotFoundError:  # gone since it was seen
        return NOT_FINISHED
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        problem = str(e)
    if problem:
        return f"{SUMMARY} is damaged ({shown(problem, 60)})"
    try:
        rows = schema.read_table(run_dir / METRICS, schema.METRICS_COLUMNS)
        problem = schema.metrics_problem(rows, schema.arm_names(summary))
    except (OSError, ValueError) as e:
        problem = str(e)
    if problem:
        return f"{METRICS} is damaged ({shown(problem, 60)})"
    return summary, rows


def written_by_bn_lab(directory: Path) -> bool:
    """Whether `directory` holds a run bn_lab wrote, by content: its environment.json is bn_lab's record."""
    try:
        env = _json_object(directory / ENVIRONMENT)
    except (OSError, ValueError):
        return False
    return (
        isinstance(env.get("bn_lab"), str)
        and isinstance(env.get("tensorflow"), str)
        and isinstance(env.get("data"), dict)
    )


def _unknown_entries(directory: Path) -> list[str]:
    """Entries that no bn_lab run writes (hidden temporary files of an atomic write, and the mark of
    its staging directory that a killed commit can leave, excepted),
    inside tensorboard/ too: a run writes only one folder of event files per network there."""
    unknown = [
        p.name
        for p in directory.iterdir()
        if p.name not in RUN_ENTRIES and p.name != STAGING_MARK and not _ATOMIC_TEMPORARY.fullmatch(p.name)
    ]
    events = directory / TENSORBOARD
    if events.is_dir() and not events.is_symlink():
        for network in events.iterdir():
            inside = list(network.iterdir()) if network.is_dir() and not network.is_symlink() else [network]
            unknown += [
                str(p.relative_to(directory))
                for p in inside
                if p is network or not (p.is_file() and p.name.startswith("events.out.tfevents."))
            ]
    return sorted(unknown)


def replaceable(directory: Path, cell_of_a_sweep: bool = False) -> str | None:
    """None if --force may replace `directory` (empty, or a bn_lab run), else what was found there.

    --force replaces only what bn_lab wrote: nothing but a run's files, and an environment.json
    that is bn_lab's record (file names alone prove nothing). Inside a bn_lab sweep, a cell's
    directory of run files whose record is damaged is replaced too (cell_of_a_sweep): the sweep
    made it. Anything else, a user's own files or a sweep, is never deleted.
    """
    entries = list(directory.iterdir())
    if not entries:
        return None
    unknown = _unknown_entries(directory)
    if unknown:
        return f"it holds {listed(unknown)}, which no bn_lab run writes"
    if not (written_by_bn_lab(directory) or cell_of_a_sweep):
        return f"it is not a bn_lab run (no {ENVIRONMENT} that bn_lab wrote)"
    return None


def point_latest(run_dir: Path) -> None:
    """<parent>/latest: a one-line text file naming the newest run directory beside it.

    A file, not a symlink to the directory: TensorBoard follows directory links, so
    `tensorboard --logdir results/` listed every latest run twice. `bn_lab.load()` follows it;
    in a shell: cd "results/<experiment>/$(cat results/<experiment>/latest)".
    """
    from bn_lab.disk import files

    latest = run_dir.parent / LATEST
    if latest.exists() or latest.is_symlink():  # replaced only if it is bn_lab's: the name of a run
        try:
            named = "" if latest.is_symlink() else files.read_regular(latest, 256).decode().strip()
        except (OSError, ValueError):
            named = ""
        if not RUN_ID.fullmatch(named):
            return  # the user's own `latest`: never touched (the run itself is complete)
    try:
        files.write_text(latest, run_dir.name + "\n")
    except OutputError:  # a convenience only; the run itself is complete
        pass


def follow_latest(path: Path) -> Path:
    """The run directory a `latest` pointer names; any other path as it is."""
    if path.name == LATEST and path.is_file() and not path.is_symlink():
        try:
            named = read_regular(path, 256).decode().strip()
        except (OSError, ValueError):
            return path  # not bn_lab's pointer: the path is what it names, and says why where it is read
        if RUN_ID.fullmatch(named):
            return path.parent / named
    return path


__all__ = ["OutputError", "RunDirError", "is_complete", "load_summary"]
