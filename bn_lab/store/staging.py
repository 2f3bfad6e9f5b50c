"""bn_lab's hidden directories beside a run's place (rundir.STAGING, each holding its mark): making
one, finding the live process that writes a place, cleaning up after one that is gone (an old run a
--force replace had set aside goes back first), and the lock and deferred signals a claim takes
while it looks and renames (bn_lab.store.claims).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import stat
import threading
from pathlib import Path

from bn_lab.disk.files import OutputError, cannot_write, rename_no_replace, write_json
from bn_lab.store.callers import RUN_COMMAND, CallerOptions
from bn_lab.store.rundir import (
    DELETED_RUN,
    REPLACED_RUN,
    STAGING,
    STAGING_MARK,
    RunDirError,
    is_marked_staging,
    staging_mark,
)


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


def live_writer(parent: Path, name: str) -> tuple[int, str] | None:
    """(pid, "run" or "sweep") of another live process writing `name` in `parent`; cleans up the
    hidden directories of bn_lab's whose process is gone (clean_up). Only bn_lab's count."""
    writer = None
    for staging in parent.glob(f".{glob_escape(name)}.*-*"):
        match = STAGING.fullmatch(staging.name)
        if not match or match["name"] != name or not is_marked_staging(staging):
            continue  # not bn_lab's: never a claim, never removed
        pid = int(match["pid"])
        if pid != os.getpid() and pid_alive(pid):
            writer = (pid, "sweep" if match["kind"] == "sweep" else "run")
        else:  # killed, or left by this very process: nobody will finish it
            clean_up(staging, match["kind"], parent / name)
    return writer


def clean_up(staging: Path, kind: str, run_dir: Path) -> None:
    """Removes a hidden directory of bn_lab's whose process is gone. An old run that a --force
    replace had set aside, and that never saw its replacement in place, goes back first."""
    old = staging / REPLACED_RUN
    if kind == "replaced" and old.is_dir() and not (run_dir.exists() or run_dir.is_symlink()):
        try:
            rename_no_replace(old, run_dir)
        except OSError:
            return  # left as it is, marked: the next claim tries again
    shutil.rmtree(staging / DELETED_RUN, ignore_errors=True)  # the mark last: never an unmarked half
    shutil.rmtree(staging, ignore_errors=True)


def make_staging(path: Path, place: Path) -> Path:
    """Creates `path`, a hidden directory of bn_lab's (rundir.STAGING) beside `place`, with its mark.
    One already there is replaced if it is bn_lab's (left by an earlier process of this pid) and
    refused otherwise. A place that cannot be written is an OutputError naming `place`."""
    if path.exists() or path.is_symlink():
        if not is_marked_staging(path):
            raise RunDirError(f"{path}: named as bn_lab's hidden directories are, but not one of them; move it")
        shutil.rmtree(path)
    try:
        path.mkdir()
        write_json(path / STAGING_MARK, staging_mark(path))
    except (OSError, OutputError) as e:  # a read-only file system, a full disk, no permission
        shutil.rmtree(path, ignore_errors=True)
        raise cannot_write(place, e) from None
    return path


@contextlib.contextmanager
def signals_deferred():
    """Ctrl-C and SIGTERM wait while the block runs, then are delivered: stopped between the two
    renames of a commit, the old run would be set aside and the new one not in place."""
    deferred = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not None]
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        deferred = []
    saved = {s: signal.getsignal(s) for s in deferred}
    caught = []
    for s in deferred:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


def refuse_if_written(directory: Path, options: CallerOptions = RUN_COMMAND) -> None:
    """Every kind of claim (a run's, a sweep's) sees every other: refused while another process writes `directory`."""
    writer = live_writer(directory.parent, directory.name)
    if writer is not None:
        pid, kind = writer
        raise RunDirError(
            f"{directory}: another bnlab {kind} (pid {pid}) is writing it; wait for it or {options.write_elsewhere}"
        )


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


@contextlib.contextmanager
def locked(parent: Path):
    """An exclusive lock on a directory, for the few milliseconds a claim takes."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def make_parent(parent: Path) -> None:
    for ancestor in (parent, *parent.parents):
        try:
            found = ancestor.stat()  # through symbolic links: a loop is ELOOP, a dangling one not there
        except FileNotFoundError:
            continue
        except OSError as e:
            raise cannot_write(parent, e) from None
        if not stat.S_ISDIR(found.st_mode):
            raise OutputError(f"{parent}: cannot write ({ancestor} is a file, not a directory)")
        break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise cannot_write(parent, e) from None


def remove_stale(directory: Path) -> None:
    """Hidden directories of bn_lab's in `directory` whose process is gone (killed runs and sweeps):
    cleaned up as a claim there would (clean_up)."""
    with locked(directory):
        for staging in directory.glob(".*.*-*"):
            match = STAGING.fullmatch(staging.name)
            if match and is_marked_staging(staging) and not pid_alive(int(match["pid"])):
                clean_up(staging, match["kind"], directory / match["name"])
