"""The datasets a run can train on, each a registry entry (registry.DATASETS) that declares what it
is before anything is read or built: its images' shape, its classes, its splits (train, validation
carved from the training images as MNIST's always was, test), its checksum where it has one, and
where it is found.

An entry has three methods, each given the config's `data` section:
  - `declare(data) -> Declaration`: cheap, numpy at most (an npz's headers and labels): what config
    validation, the networks' shapes and the memory estimate read;
  - `locate(data) -> str`: where it will be read from, checked to be there (or fetchable) before
    anything slow starts; DataError otherwise;
  - `load(data) -> Dataset`: the arrays, checked, split and cut to the limits.
numpy and the standard library only: TensorFlow is the networks' business.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bn_lab import registry

SPLITS = ("train", "validation", "test")


class DataError(Exception):
    """One clear line naming the file, folder or key and what is wrong (no traceback shown to users)."""


LIMIT_KEYS = {"train": "data.train_limit", "validation": "data.val_limit", "test": "data.test_limit"}


@dataclass(frozen=True)
class Declaration:
    """What a dataset is, before its arrays are read."""

    name: str  # its data.dataset
    image_shape: tuple[int, int, int]  # height, width, channels of one image
    classes: int  # labels are 0..classes-1
    sizes: dict  # {train, validation, test}: images per split, the validation split carved from training
    checksum: str | None = None  # sha256 of its arrays' content, where the dataset has a canonical one

    @property
    def features(self) -> int:
        """Values of one image: height × width × channels (the MLP's input)."""
        return int(np.prod(self.image_shape))


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, height·width·channels): each image flat, row-major, values 0..255 (not scaled)
    labels: np.ndarray  # int32 (N,), 0..classes-1


@dataclass(frozen=True)
class Dataset:
    declaration: Declaration
    train: Split
    validation: Split
    test: Split
    provenance: dict = field(default_factory=dict)  # source, path, checksums: what environment.json records

    def describe(self) -> dict:
        """JSON-able provenance of the loaded data, with the sizes each split has after the limits."""
        return {
            "dataset": self.declaration.name,
            **self.provenance,
            "sizes": {name: int(len(getattr(self, name).labels)) for name in SPLITS},
        }

    def pixel_statistics(self) -> tuple[list[float], list[float]]:
        """The mean and standard deviation of each channel's pixels (in [0, 1]) over the training
        split as used: what `data.standardize` subtracts and divides by."""
        channels = self.declaration.image_shape[2]
        pixels = self.train.images.reshape(-1, channels).astype(np.float64) / 255.0
        return pixels.mean(axis=0).tolist(), pixels.std(axis=0).tolist()


def entry(data: dict):
    """The registry entry of a config's data section."""
    try:
        return registry.DATASETS.get(data["dataset"])
    except ValueError:
        raise DataError(
            f"data.dataset: unknown value {data['dataset']!r}; allowed: {', '.join(registry.DATASETS)}"
        ) from None


def declare(data: dict) -> Declaration:
    return entry(data).declare(data)


def locate(data: dict) -> str:
    return entry(data).locate(data)


def load(data: dict) -> Dataset:
    return entry(data).load(data)


def split_sizes(total_train: int, test: int, validation_size: int) -> dict:
    """The splits' sizes when the first `validation_size` training images are the validation split."""
    return {"train": total_train - validation_size, "validation": validation_size, "test": test}


def carve(declaration: Declaration, arrays: dict, data: dict, provenance: dict) -> Dataset:
    """The splits of arrays {x_train, y_train, x_test, y_test} (images (N, H, W[, C]) uint8, labels
    integers): validation is the first data.validation_size training images, train the rest, each
    cut to its limit (data.train_limit, ...)."""
    validation_size = declaration.sizes["validation"]

    def split(images: np.ndarray, labels: np.ndarray, limit) -> Split:
        n = len(labels) if limit is None else int(limit)
        return Split(images[:n].reshape(n, declaration.features), labels[:n].astype(np.int32).reshape(n))

    x_train, y_train = arrays["x_train"], arrays["y_train"]
    return Dataset(
        declaration,
        train=split(x_train[validation_size:], y_train[validation_size:], data.get("train_limit")),
        validation=split(x_train[:validation_size], y_train[:validation_size], data.get("val_limit")),
        test=split(arrays["x_test"], arrays["y_test"], data.get("test_limit")),
        provenance=provenance,
    )


def check_limits(declaration: Declaration, data: dict) -> None:
    """Each split's limit within the split (DataError naming the key otherwise)."""
    for split, key in LIMIT_KEYS.items():
        limit = data.get(key.split(".", 1)[1])
        if limit is None:
            continue
        size = declaration.sizes[split]
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= size:
            raise DataError(f"{key} must be an integer in 1..{size} (the {split} split's size) or null, got {limit!r}")
