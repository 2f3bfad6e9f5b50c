"""`data.dataset: npz` (registry.DATASETS): any image classification dataset in one .npz file
(`data.path`), holding x_train, y_train, x_test, y_test as Keras' `load_data()` returns them: uint8
images (N, H, W) or (N, H, W, C), integer labels 0..K−1 ((N,) or (N, 1)). The validation split is
the first `data.validation_size` training images.

Everything is checked before TensorFlow starts, each problem one line naming the file, the array
and what is allowed: the arrays' shapes and dtypes from their .npy headers before any array is
read (a header may claim 10¹² values), then the labels' range, the sizes against the limits.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path

import numpy as np

from bn_lab.data.datasets import DataError, Dataset, Declaration, carve, check_limits, split_sizes

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MAX_SIDE = 512  # pixels on a side
MAX_CHANNELS = 4
MAX_CLASSES = 1000
MAX_BYTES = 8 * 2**30  # of the file, and of the images once read
_BAD_FILE_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


def npy_headers(npz, keys) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of an open npz's arrays, from their .npy headers alone."""
    found = {}
    for key in keys:
        with npz.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(member)
        found[key] = (tuple(shape), dtype)
    return found


def _path(data: dict) -> Path:
    if not data.get("path"):
        raise DataError("data.dataset is 'npz' but data.path is not set (the .npz file to read)")
    return Path(data["path"]).expanduser()


def _open(path: Path):
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"data.path: {path}: no such file") from None
    except OSError as err:
        raise DataError(f"data.path: {path}: cannot read ({err.strerror or err})") from None
    if not path.is_file():
        raise DataError(f"data.path: {path}: not a regular file")
    if size > MAX_BYTES:
        raise DataError(f"data.path: {path}: {size:,} bytes, more than the {MAX_BYTES:,} a dataset may have")
    try:
        return np.load(path, allow_pickle=False)
    except _BAD_FILE_ERRORS as err:
        raise DataError(f"data.path: {path}: not a readable npz ({type(err).__name__}: {err})") from None


def _shapes(path: Path, npz) -> tuple[tuple[int, int, int], int, int]:
    """(image shape, training images, test images), the headers checked."""
    missing = [key for key in ARRAYS if key not in npz.files]
    if missing:
        raise DataError(f"data.path: {path}: no {', '.join(missing)}; an npz dataset holds {', '.join(ARRAYS)}")
    headers = npy_headers(npz, ARRAYS)
    image_shape = None
    for split in ("train", "test"):
        (images, image_type), (labels, label_type) = headers[f"x_{split}"], headers[f"y_{split}"]
        if image_type != np.uint8 or len(images) not in (3, 4):
            raise DataError(
                f"data.path: {path}: x_{split} is {image_type} {images}; allowed: uint8 images (N, H, W) or (N, H, W, C)"
            )
        shape = images[1:] + (1,) * (4 - len(images))
        if not (1 <= shape[0] <= MAX_SIDE and 1 <= shape[1] <= MAX_SIDE and 1 <= shape[2] <= MAX_CHANNELS):
            raise DataError(
                f"data.path: {path}: x_{split}'s images are {shape}; allowed: at most {MAX_SIDE}×{MAX_SIDE} pixels "
                f"and {MAX_CHANNELS} channels"
            )
        if image_shape not in (None, shape):
            raise DataError(f"data.path: {path}: x_train's images are {image_shape}, x_test's {shape}: they must agree")
        image_shape = shape
        if label_type.kind not in "iu" or not (len(labels) == 1 or labels[1:] == (1,)):
            raise DataError(
                f"data.path: {path}: y_{split} is {label_type} {labels}; allowed: integer labels (N,) or (N, 1)"
            )
        if labels[0] != images[0]:
            raise DataError(
                f"data.path: {path}: {images[0]:,} images in x_{split} but {labels[0]:,} labels in y_{split}"
            )
        if images[0] < 1:
            raise DataError(f"data.path: {path}: x_{split} holds no images")
    if (headers["x_train"][0][0] + headers["x_test"][0][0]) * int(np.prod(image_shape)) > MAX_BYTES:
        raise DataError(f"data.path: {path}: its images take more than the {MAX_BYTES:,} bytes a dataset may have")
    return image_shape, headers["x_train"][0][0], headers["x_test"][0][0]


def _classes(path: Path, npz) -> int:
    labels = [np.asarray(npz[key]).reshape(-1) for key in ("y_train", "y_test")]
    low, high = min(int(y.min()) for y in labels), max(int(y.max()) for y in labels)
    if low < 0 or high >= MAX_CLASSES:
        raise DataError(f"data.path: {path}: labels {low}..{high}; allowed: 0..K−1 with K at most {MAX_CLASSES}")
    if high < 1:
        raise DataError(f"data.path: {path}: every label is {high}; a classification needs at least 2 classes")
    return high + 1


class NpzDataset:
    """The registry entry (bn_lab.data.datasets)."""

    def declare(self, data: dict) -> Declaration:
        path = _path(data)
        with _open(path) as npz:
            try:
                image_shape, train, test = _shapes(path, npz)
                classes = _classes(path, npz)
            except _BAD_FILE_ERRORS as err:
                raise DataError(f"data.path: {path}: truncated or corrupt npz ({type(err).__name__}: {err})") from None
        validation_size = data.get("validation_size")
        if not 1 <= validation_size < train:
            raise DataError(
                f"data.validation_size must be in 1..{train - 1} ({path} has {train:,} training images), "
                f"got {validation_size}"
            )
        return Declaration("npz", image_shape, classes, split_sizes(train, test, validation_size))

    def locate(self, data: dict) -> str:
        path = _path(data)
        if not path.is_file():
            raise DataError(f"data.path: {path}: no such file")
        return str(path)

    def load(self, data: dict) -> Dataset:
        declared = self.declare(data)
        check_limits(declared, data)
        path = _path(data)
        raw = path.read_bytes()
        with _open(path) as npz:
            try:
                arrays = {key: np.asarray(npz[key]) for key in ARRAYS}
            except _BAD_FILE_ERRORS as err:
                raise DataError(f"data.path: {path}: truncated or corrupt npz ({type(err).__name__}: {err})") from None
        content = hashlib.sha256()
        for key in ARRAYS:
            content.update(np.ascontiguousarray(arrays[key]).tobytes())
        provenance = {
            "source": "npz",
            "path": str(path),
            "file_sha256": hashlib.sha256(raw).hexdigest(),
            "content_sha256": content.hexdigest(),
        }
        return carve(declared, arrays, data, provenance)


NPZ = NpzDataset()
