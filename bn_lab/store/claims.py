"""Claiming a run directory (or a sweep's), staging it and putting it in place; bn_lab.store.rundir
names what is claimed.

Claiming is atomic: the checks (is the place free, may --force replace what is there, is another
run writing it) and the creation of the staging directory happen under an exclusive lock on the
parent directory, and a live staging directory is the claim that other runs respect. The lock is
held for milliseconds only, and the kernel drops it if the process dies; a staging directory
whose process is gone is stale and removed. An interrupted run never leaves anything that looks
complete: its files stay in the staging directory, which is removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import time
from pathlib import Path

from bn_lab.store.files import OutputError, cannot_write
from bn_lab.store.rundir import MANIFEST, STAGING, RunDirError, listed, replaceable, written_by_bn_lab


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


def _live_writer(parent: Path, name: str) -> tuple[int, str] | None:
    """(pid, "run" or "sweep") of another live process writing `name` in `parent`; removes stale staging dirs."""
    writer = None
    for staging in parent.glob(f".{glob_escape(name)}.*-*"):
        match = STAGING.fullmatch(staging.name)
        if not match or match["name"] != name or not staging.is_dir():
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and pid_alive(pid):
            writer = (pid, "sweep" if match["kind"] == "sweep" else "run")
        else:  # killed, or left by this very process: nobody will finish it
            shutil.rmtree(staging, ignore_errors=True)
    return writer


def refuse_if_written(directory: Path) -> None:
    """Every kind of claim (a run's, a sweep's) sees every other: refused while another process writes `directory`."""
    writer = _live_writer(directory.parent, directory.name)
    if writer is not None:
        pid, kind = writer
        raise RunDirError(f"{directory}: another bnlab {kind} (pid {pid}) is writing it; wait for it or use --out")


@contextlib.contextmanager
def sweep_claim(sweep_dir: Path, check):
    """Claims `sweep_dir` for this process's sweep while the block runs: `check(sweep_dir)` (may it be
    written?) runs under the parent's lock, then a marker beside it makes every run's claim on the
    same path see the sweep (refuse_if_written), as the sweep sees theirs."""
    check_location(sweep_dir)
    _make_parent(sweep_dir.parent)
    marker = sweep_dir.parent / f".{sweep_dir.name}.sweep-{os.getpid()}"
    with _locked(sweep_dir.parent):
        refuse_if_written(sweep_dir)
        check(sweep_dir)
        try:
            marker.mkdir(exist_ok=True)
        except OSError as e:
            raise cannot_write(sweep_dir, e) from None
    try:
        yield
    finally:
        shutil.rmtree(marker, ignore_errors=True)


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


# Linux's limit for one name; a staging name adds a dot and ".partial-<pid>" to the run's.
NAME_MAX_BYTES = 255
STAGING_EXTRA_BYTES = 24


def check_location(run_dir: Path) -> None:
    """Refuses places a run (or a sweep) can never be written to: a name too long for the file
    system (with its staging name's additions), the current directory or one of its parents."""
    for i, part in enumerate(run_dir.parts):
        room = NAME_MAX_BYTES - (STAGING_EXTRA_BYTES if i == len(run_dir.parts) - 1 else 0)
        if len(os.fsencode(part)) > room:
            shown_path = str(run_dir) if len(str(run_dir)) <= 60 else str(run_dir)[:60] + "…"
            raise RunDirError(f"{shown_path}: a name in it is {len(os.fsencode(part))} bytes; at most {room}")
    try:
        resolved, here = run_dir.resolve(), Path.cwd().resolve()
    except OSError as e:
        raise cannot_write(run_dir, e) from None
    if resolved == here or resolved in here.parents:
        raise RunDirError(
            f"{run_dir}: is the current directory or contains it; a run needs a directory of its own, "
            "e.g. --out results/my_run"
        )


def fingerprint(path: Path):
    """What is at `path` now, to tell later whether anything there changed: None if nothing;
    else the directory's identity and every entry's name, inode, size and modification time."""
    try:
        here = path.lstat()
    except FileNotFoundError:
        return None
    if not path.is_dir() or path.is_symlink():
        return ("not a directory", here.st_ino, here.st_mtime_ns)
    entries = []
    for folder, subfolders, names in os.walk(path):  # the whole tree: a file added deep inside counts
        for name in subfolders + names:
            entry = Path(folder, name)
            info = entry.lstat()
            entries.append((str(entry.relative_to(path)), info.st_ino, info.st_size, info.st_mtime_ns))
    return (here.st_dev, here.st_ino, tuple(sorted(entries)))


def _describe_now(path: Path) -> str:
    if not path.is_dir() or path.is_symlink():
        return "it is now a file, not a directory"
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return "it was created meanwhile"
    return f"it now holds {listed(names)}"


class Claim:
    """A run directory claimed by this process: write into `staging`, then `commit()`.

    Used as a context manager, it removes the staging directory if the block raises
    (Ctrl-C included), so nothing incomplete is left, and commits if it does not.
    `seen` is what was at run_dir when it was claimed: the commit replaces only that.
    """

    def __init__(self, run_dir: Path, staging: Path, seen=None):
        self.run_dir, self.staging, self.seen = run_dir, staging, seen

    def commit(self) -> Path:
        """Puts the staged run at run_dir. What the claim saw there (an empty directory, a run
        replaced with --force) is set aside first and removed after; anything else found there
        now is left untouched, the finished run is kept beside it, and the error names both."""
        with _locked(self.run_dir.parent):
            old = None
            try:
                if fingerprint(self.run_dir) != self.seen:
                    self._keep_beside()
                if self.seen is not None:
                    old = self.run_dir.parent / f".{self.run_dir.name}.replaced-{os.getpid()}"
                    os.rename(self.run_dir, old)
                os.rename(self.staging, self.run_dir)  # fails if anything but an empty directory is there
            except OSError as e:
                if old is not None and not self.run_dir.exists():
                    os.rename(old, self.run_dir)  # what was there goes back, untouched
                    old = None
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    self._keep_beside()
                raise cannot_write(self.run_dir, e) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.run_dir

    def _keep_beside(self):
        """Something else arrived at run_dir while the run trained: the run goes to a free name beside it."""
        found = _describe_now(self.run_dir)
        for n in range(2, 10_000):
            kept = self.run_dir.with_name(f"{self.run_dir.name}-{n}")
            if not (kept.exists() or kept.is_symlink()):
                os.rename(self.staging, kept)
                break
        else:
            raise RunDirError(f"{self.run_dir}: changed while this run trained ({found}); no free name to keep the run")
        raise RunDirError(
            f"{self.run_dir}: changed while this run trained ({found}); nothing there was touched, "
            f"and the finished run is at {kept}"
        )

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
    return Claim(run_dir, staging, fingerprint(run_dir))


def claim(run_dir: str | Path, force: bool = False, cell_of_a_sweep: bool = False) -> Claim:
    """Claims exactly `run_dir` (the user's --out, a sweep cell), before anything slow starts.

    cell_of_a_sweep: run_dir is a cell of a bn_lab sweep (see replaceable)."""
    run_dir = Path(run_dir)
    check_location(run_dir)
    if run_dir.name in ("", ".", ".."):
        raise RunDirError(f"{run_dir}: not a directory name a run can be written to")
    _make_parent(run_dir.parent)
    with _locked(run_dir.parent):
        refuse_if_written(run_dir)
        if run_dir.exists() or run_dir.is_symlink():
            if not run_dir.is_dir() or run_dir.is_symlink():
                raise RunDirError(f"{run_dir}: exists and is not a directory")
            if (run_dir / MANIFEST).exists():
                raise RunDirError(f"{run_dir}: holds a sweep ({MANIFEST}), not a run; use --out to write elsewhere")
            if any(run_dir.iterdir()):
                if not force:
                    raise RunDirError(
                        f"{run_dir}: already holds a run; use --force to replace it or --out to write elsewhere"
                        if written_by_bn_lab(run_dir)
                        else f"{run_dir}: already holds files bn_lab did not write; use --out to write elsewhere"
                    )
                problem = replaceable(run_dir, cell_of_a_sweep)
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
        match = STAGING.fullmatch(staging.name)
        if match and staging.is_dir() and not pid_alive(int(match["pid"])):
            shutil.rmtree(staging, ignore_errors=True)


def unpack_staging(run_dir: Path) -> Path:
    """A fresh hidden directory beside run_dir for a run that arrives packed (a Ray task's)."""
    staging = run_dir.parent / f".{run_dir.name}.unpack-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging
