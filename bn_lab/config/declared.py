"""What a resolved config's run is made of, declared before anything is read or built: its dataset
(bn_lab.data.datasets) and its model (bn_lab.nets.architecture). Config validation, the memory
estimate and the run itself read these; none of them builds a network or loads an image."""

from __future__ import annotations

import functools
import json

from bn_lab.data import datasets
from bn_lab.nets import architecture as architectures


@functools.lru_cache(maxsize=64)
def _dataset(data_json: str) -> datasets.Declaration:
    return datasets.declare(json.loads(data_json))


def dataset(config: dict) -> datasets.Declaration:
    """The dataset a config trains on (DataError if its file cannot be declared). An npz's headers are
    read once per data section, not once per cell of a sweep."""
    return _dataset(json.dumps(config["data"], sort_keys=True))


def architecture(config: dict) -> architectures.Architecture:
    """The model a config trains, for its dataset's images and classes."""
    declared = dataset(config)
    return architectures.declare(config, declared.image_shape, declared.classes)
