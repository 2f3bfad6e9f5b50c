"""Atomic file writing: a reader sees the old file or the whole new one, never half of one; and
the one reader of the JSON files bn_lab wrote, which a damaged file cannot crash."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
import tempfile
from pathlib import Path


class OutputError(Exception):
    """Results cannot be written (read-only, no permission, disk full); names the path and the cause."""

    def __init__(self, message: str, cause: str = ""):
        super().__init__(message)
        self.cause = cause  # the OS's words, to name another path with (cannot_write)


def cannot_write(path: str | Path, error: OSError | OutputError) -> OutputError:
    """The one-line OutputError for an OSError (or another path's OutputError) met while writing `path`."""
    cause = error.cause if isinstance(error, OutputError) else error.strerror or str(error) or type(error).__name__
    return OutputError(f"{path}: cannot write ({cause})", cause)


# A JSON file of bn_lab's is a few kB; one far larger, or nested deeper than Python's parser
# recurses, is damaged: ValueError, as for any other damage.
MAX_JSON_BYTES = 64 * 2**20


def rename_no_replace(source: str | Path, target: str | Path) -> None:
    """os.rename, but never over anything at target, not even an empty directory (os.rename replaces
    one: a directory someone creates between a check and the rename would be gone, and what they
    write next would land in ours). Linux's renameat2(RENAME_NOREPLACE): EEXIST if target exists.
    Where it is missing (another OS, an old C library) or the file system refuses the flag, os.rename."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # TypeError: Windows' CDLL(None)
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), rename_noreplace) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):  # EINVAL, ENOSYS: the flag or the call is not supported
            raise OSError(code, os.strerror(code), str(target))
    os.rename(source, target)


def open_regular(path: str | Path, text: bool = False):
    """`path` opened for reading, if it is a regular file: the one way bn_lab opens a file it reads
    (a run's, a config, MNIST's). A FIFO would block the reader forever and a device never end
    (/dev/zero): ValueError("not a regular file"); a directory is IsADirectoryError; else open's
    OSError. text: UTF-8, newlines as they are (what the csv module wants)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open itself
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise ValueError("not a regular file")
        binary = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return io.TextIOWrapper(binary, encoding="utf-8", newline="") if text else binary


def read_regular(path: str | Path, limit: int) -> bytes:
    """A regular file's bytes (open_regular); ValueError if it holds more than `limit`."""
    with open_regular(path) as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"larger than {limit:,} bytes")
    return raw


def read_json(path: str | Path):
    """The value of a JSON file bn_lab wrote. OSError if it cannot be read; ValueError if it is
    not UTF-8 JSON (truncated, empty, nested too deep or too large) or not a regular file."""
    raw = read_regular(path, MAX_JSON_BYTES)
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deep") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def write_bytes(path: str | Path, content: bytes) -> None:
    """Writes atomically; any OSError (a full disk, a read-only directory) becomes an OutputError naming path."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise cannot_write(path, e) from None
        raise


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_csv(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_npz(path: str | Path, arrays: dict) -> None:
    """numpy arrays by name as one .npz file (np.load(path) reads it; no pickle)."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def save_figure(path: str | Path, figure, tight: bool = True) -> None:
    """The figure as an image at path; tight=False keeps the figure's own margins (faster: one draw, not two)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip("."), dpi=120, bbox_inches="tight" if tight else None)
    write_bytes(path, buffer.getvalue())
