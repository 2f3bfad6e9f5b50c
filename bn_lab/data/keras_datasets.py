"""Datasets Keras ships a loader for (registry.DATASETS `fashion_mnist`, `cifar10`): read from Keras'
own cache ($KERAS_HOME/datasets, default ~/.keras/datasets) in its layout, by bn_lab's readers
(numpy only: located and checked before TensorFlow starts). Where the cache lacks them, Keras'
`load_data()` fetches and caches them on a machine that can download; on one that cannot, the run
stops before anything slow with one line saying so.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from bn_lab.data import mnist_files
from bn_lab.data.datasets import DataError, Dataset, Declaration, carve, check_limits, split_sizes


def keras_datasets_dir() -> Path:
    keras_home = os.environ.get("KERAS_HOME")
    return (Path(keras_home).expanduser() if keras_home else Path.home() / ".keras") / "datasets"


def _reachable(url: str, timeout: float = 2.0) -> str | None:
    """None if the host of `url` answers on its port, else why not."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout).close()
    except OSError as err:
        return f"{parts.hostname} cannot be reached ({err.strerror or err})"
    return None


class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's batches are pickled dicts of a numpy array and a list: nothing else may be built
    (a pickle can run code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how a protocol-2 pickle written by Python 3 spells bytes
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a dataset file")
        return super().find_class(module, name)


def read_cifar10_batch(path: Path, images: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    """One batch file: ((images, 32, 32, 3) uint8, (images,) labels, the file's bytes)."""
    raw = mnist_files._read_bytes(path)
    try:
        batch = _ArraysOnly(io.BytesIO(raw), encoding="bytes").load()
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(f"{path}: not a CIFAR-10 batch ({type(err).__name__}: {err})") from None
    if data.dtype != np.uint8 or data.shape != (images, 3 * 32 * 32) or labels.shape != (images,):
        raise DataError(
            f"{path}: data {data.dtype} {data.shape}, labels {labels.shape}; expected uint8 ({images}, 3072), ({images},)"
        )
    return data.reshape(images, 3, 32, 32).transpose(0, 2, 3, 1), labels, raw


@dataclass(frozen=True)
class KerasDataset:
    """A dataset Keras' loader fetches into its cache; `read(folder)` reads that cache."""

    name: str
    image_shape: tuple[int, int, int]
    classes: int
    train: int
    test: int
    folders: tuple[str, ...]  # where in Keras' datasets folder its files are, the first found is read
    files: tuple[str, ...]  # the files that must be there
    origin: str  # where Keras downloads it from (what must be reachable to fetch it)

    def _folder(self) -> Path | None:
        for folder in self.folders:
            candidate = keras_datasets_dir() / folder
            if all((candidate / f).is_file() for f in self.files):
                return candidate
        return None

    def declare(self, data: dict) -> Declaration:
        validation_size = data.get("validation_size")
        if not 1 <= validation_size < self.train:
            raise DataError(
                f"data.validation_size must be in 1..{self.train - 1} ({self.name} has {self.train:,} training images), "
                f"got {validation_size}"
            )
        return Declaration(
            self.name, self.image_shape, self.classes, split_sizes(self.train, self.test, validation_size)
        )

    def locate(self, data: dict) -> str:
        folder = self._folder()
        if folder is not None:
            return str(folder)
        if (why := _reachable(self.origin)) is not None:
            raise DataError(
                f"data.dataset {self.name}: not in Keras' cache ({keras_datasets_dir() / self.folders[0]}) and it "
                f"cannot be fetched here: {why}; copy Keras' files there, or use data.dataset: npz"
            )
        return self.origin

    def load(self, data: dict) -> Dataset:
        declared = self.declare(data)
        check_limits(declared, data)
        folder = self._folder()
        if folder is None:  # fetched by Keras' own loader into its cache, then read from there
            import keras

            getattr(keras.datasets, self.name).load_data()
            folder = self._folder()
            if folder is None:
                raise DataError(f"data.dataset {self.name}: Keras' loader left no files in {keras_datasets_dir()}")
        arrays, file_sha256 = self.read(folder)
        for split, size in (("train", self.train), ("test", self.test)):
            found = arrays[f"x_{split}"]
            if found.shape[0] != size or found.shape[1:] != self.image_shape[: found.ndim - 1]:
                raise DataError(
                    f"{folder}: x_{split} is {found.shape}; {self.name} has {size} images of {self.image_shape}"
                )
        content = hashlib.sha256()
        for key in ("x_train", "y_train", "x_test", "y_test"):
            content.update(np.ascontiguousarray(arrays[key]).tobytes())
        provenance = {
            "source": "keras",
            "path": str(folder),
            "file_sha256": file_sha256,
            "content_sha256": content.hexdigest(),
        }
        return carve(declared, arrays, data, provenance)

    def read(self, folder: Path) -> tuple[dict, str]:
        if self.name == "fashion_mnist":  # the IDX files of MNIST's names and sizes
            return mnist_files.read_idx(folder)
        digest, parts = hashlib.sha256(), {"x": [], "y": []}
        for name in self.files:
            images, labels, raw = read_cifar10_batch(folder / name, 10000)
            digest.update(raw)
            parts["x"].append(images)
            parts["y"].append(labels)
        return {
            "x_train": np.concatenate(parts["x"][:5]),
            "y_train": np.concatenate(parts["y"][:5]),
            "x_test": parts["x"][5],
            "y_test": parts["y"][5],
        }, digest.hexdigest()


FASHION_MNIST = KerasDataset(
    "fashion_mnist",
    (28, 28, 1),
    10,
    60000,
    10000,
    ("fashion-mnist",),
    tuple(mnist_files.IDX_FILES.values()),
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/train-labels-idx1-ubyte.gz",
)
CIFAR10 = KerasDataset(
    "cifar10",
    (32, 32, 3),
    10,
    50000,
    10000,
    ("cifar-10-batches-py-target/cifar-10-batches-py", "cifar-10-batches-py"),  # Keras 3's, tf.keras 2's
    tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
)
