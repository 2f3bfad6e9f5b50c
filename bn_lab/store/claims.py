"""Claiming a run directory (or a sweep's), staging it and putting it in place; bn_lab.store.rundir
names what is claimed.

Claiming is atomic: the checks (is the place free, may --force replace what is there, is another
run writing it) and the creation of the staging directory happen under an exclusive lock on the
parent directory, and a live staging directory is the claim that other runs respect. The lock is
held for milliseconds only, and the kernel drops it if the process dies; a staging directory
whose process is gone is stale and removed. An interrupted run never leaves anything that looks
complete: its files stay in the staging directory, which is removed.

Every hidden directory bn_lab makes holds its mark (rundir.STAGING_MARK): a directory merely named
like one (a finished run its owner renamed so) is never removed, nor taken for a claim. Putting a
run in place is interrupt-safe: Ctrl-C and SIGTERM wait for the renames, any error puts an old run
that --force was replacing back, and one set aside by a process killed meanwhile goes back to its
place when the next claim there finds it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from pathlib import Path

from bn_lab.disk.files import OutputError, cannot_write, rename_no_replace
from bn_lab.store.callers import RUN_COMMAND, SWEEP_COMMAND, CallerOptions
from bn_lab.store.rundir import (
    DELETED_RUN,
    MANIFEST,
    REPLACED_RUN,
    STAGING_MARK,
    RunDirError,
    listed,
    replaceable,
    written_by_bn_lab,
)
from bn_lab.store.staging import (
    clean_up,
    live_writer,
    locked,
    make_parent,
    make_staging,
    refuse_if_written,
    signals_deferred,
)

# Linux's limit for one name; a staging name adds a dot and ".partial-<pid>" to the run's.
NAME_MAX_BYTES = 255
STAGING_EXTRA_BYTES = 24


@contextlib.contextmanager
def sweep_claim(sweep_dir: Path, check, options: CallerOptions = SWEEP_COMMAND):
    """Claims `sweep_dir` for this process's sweep while the block runs: `check(sweep_dir)` (may it be
    written?) runs under the parent's lock, then a marker beside it makes every run's claim on the
    same path see the sweep (refuse_if_written), as the sweep sees theirs."""
    check_location(sweep_dir, options)
    make_parent(sweep_dir.parent)
    marker = sweep_dir.parent / f".{sweep_dir.name}.sweep-{os.getpid()}"
    with locked(sweep_dir.parent):
        refuse_if_written(sweep_dir, options)
        check(sweep_dir)
        make_staging(marker, sweep_dir)
    try:
        yield
    finally:
        shutil.rmtree(marker, ignore_errors=True)


def check_location(run_dir: Path, options: CallerOptions = RUN_COMMAND) -> None:
    """Refuses places a run (or a sweep) can never be written to: a name too long for the file
    system (with its staging name's additions), a path through a symbolic link loop, the current
    directory or one of its parents."""
    for i, part in enumerate(run_dir.parts):
        room = NAME_MAX_BYTES - (STAGING_EXTRA_BYTES if i == len(run_dir.parts) - 1 else 0)
        if len(os.fsencode(part)) > room:
            shown_path = str(run_dir) if len(str(run_dir)) <= 60 else str(run_dir)[:60] + "…"
            raise RunDirError(f"{shown_path}: a name in it is {len(os.fsencode(part))} bytes; at most {room}")
    try:
        resolved, here = run_dir.resolve(), Path.cwd().resolve()
    except OSError as e:
        raise cannot_write(run_dir, e) from None
    except RuntimeError:  # Python 3.11's resolve() on a symbolic link loop
        raise cannot_write(run_dir, OSError(errno.ELOOP, os.strerror(errno.ELOOP))) from None
    if resolved == here or resolved in here.parents:
        raise RunDirError(
            f"{run_dir}: is the current directory or contains it; it needs a directory of its own "
            f"({options.write_elsewhere})"
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
        now is left untouched, the finished run is kept beside it, and the error names both.

        Nothing is lost on the way: signals wait for the renames, any error puts what was set
        aside back, and what a killed process set aside goes back at the next claim (clean_up)."""
        with signals_deferred():
            with locked(self.run_dir.parent):
                if fingerprint(self.run_dir) != self.seen:
                    self._keep_beside()
                aside = None
                try:
                    if self.seen is not None:
                        aside = make_staging(self._beside("replaced"), self.run_dir)
                        os.rename(self.run_dir, aside / REPLACED_RUN)
                    rename_no_replace(self.staging, self.run_dir)  # fails if anything is there, even empty
                except BaseException as e:
                    if aside is not None:
                        self._put_back(aside)
                        aside = None
                    if not isinstance(e, OSError):
                        self.abandon()
                        raise
                    if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                        self._keep_beside()
                    raise cannot_write(self.run_dir, e) from None
                # The mark names the staging directory, not this one: even left here, it marks nothing.
                with contextlib.suppress(OSError):
                    (self.run_dir / STAGING_MARK).unlink()
            if aside is not None:
                os.rename(aside / REPLACED_RUN, aside / DELETED_RUN)  # from now on, never put back
                clean_up(aside, "replaced", self.run_dir)
        return self.run_dir

    def _beside(self, kind: str) -> Path:
        return self.run_dir.parent / f".{self.run_dir.name}.{kind}-{os.getpid()}"

    def _put_back(self, aside: Path) -> None:
        """What the commit set aside goes back to run_dir (if it cannot, it stays aside, marked,
        and the next claim there puts it back)."""
        if (aside / REPLACED_RUN).is_dir() and not (self.run_dir.exists() or self.run_dir.is_symlink()):
            with contextlib.suppress(OSError):
                rename_no_replace(aside / REPLACED_RUN, self.run_dir)
        if not (aside / REPLACED_RUN).exists():
            shutil.rmtree(aside, ignore_errors=True)

    def _keep_beside(self):
        """Something else arrived at run_dir while the run trained: the run goes to a free name beside it."""
        found = _describe_now(self.run_dir)
        for n in range(2, 10_000):
            kept = self.run_dir.with_name(f"{self.run_dir.name}-{n}")
            if not (kept.exists() or kept.is_symlink()):
                try:
                    rename_no_replace(self.staging, kept)
                except FileExistsError:  # taken since the check: the next name
                    continue
                (kept / STAGING_MARK).unlink(missing_ok=True)
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
            raise OutputError(str(error).replace(str(self.staging), str(self.run_dir)), error.cause) from None


def _stage(run_dir: Path, seen) -> Claim:
    """seen: run_dir's fingerprint taken before the checks that approved it. Taken after the staging
    directory shows, it could be of something that arrived meanwhile (a finished run copied there
    the moment the claim showed), which the commit would then replace as if --force had been given."""
    staging = make_staging(run_dir.parent / f".{run_dir.name}.partial-{os.getpid()}", run_dir)
    return Claim(run_dir, staging, seen)


def claim(
    run_dir: str | Path, force: bool = False, cell_of_a_sweep: bool = False, options: CallerOptions = RUN_COMMAND
) -> Claim:
    """Claims exactly `run_dir` (the user's --out, a sweep cell), before anything slow starts.

    cell_of_a_sweep: run_dir is a cell of a bn_lab sweep (see replaceable); options: how its
    messages name the caller's options."""
    run_dir = Path(run_dir)
    check_location(run_dir, options)
    if run_dir.name in ("", ".", ".."):
        raise RunDirError(f"{run_dir}: not a directory name a run can be written to")
    make_parent(run_dir.parent)
    with locked(run_dir.parent):
        seen = fingerprint(run_dir)  # first: whatever comes after it is a change the commit sees
        refuse_if_written(run_dir, options)
        if run_dir.exists() or run_dir.is_symlink():
            if not run_dir.is_dir() or run_dir.is_symlink():
                raise RunDirError(f"{run_dir}: exists and is not a directory")
            if (run_dir / MANIFEST).exists():
                raise RunDirError(f"{run_dir}: holds a sweep ({MANIFEST}), not a run; {options.write_elsewhere}")
            if any(run_dir.iterdir()):
                if not force:
                    raise RunDirError(
                        f"{run_dir}: already holds a run; use {options.force} to replace it or {options.elsewhere} "
                        "to write elsewhere"
                        if written_by_bn_lab(run_dir)
                        else f"{run_dir}: already holds files bn_lab did not write; {options.write_elsewhere}"
                    )
                problem = replaceable(run_dir, cell_of_a_sweep)
                if problem:
                    raise RunDirError(f"{run_dir}: {options.force} replaces only a bn_lab run, and {problem}")
        return _stage(run_dir, seen)


def claim_new(results_root: str | Path, experiment: str, seed: int) -> Claim:
    """Claims a new results/<experiment>/<YYYYmmdd-HHMMSS>-seed<seed>[-N]; never one another run has."""
    parent = Path(results_root) / experiment
    make_parent(parent)
    stem = f"{timestamp()}-seed{seed}"
    with locked(parent):
        for n in range(1, 10_000):
            run_dir = parent / (stem if n == 1 else f"{stem}-{n}")
            if not (run_dir.exists() or run_dir.is_symlink()) and live_writer(parent, run_dir.name) is None:
                return _stage(run_dir, None)
    raise RunDirError(f"{parent}: no free run directory name for {stem}")  # 10,000 runs in one second


def new_directory(parent: str | Path, stem: str, options: CallerOptions = RUN_COMMAND) -> Path:
    """Creates and returns parent/stem, or parent/stem-2, -3, ...: one that no other process has.
    A place that can never be written is refused before anything is created (check_location)."""
    parent = Path(parent)
    check_location(parent / f"{stem}-10000", options)
    make_parent(parent)
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
