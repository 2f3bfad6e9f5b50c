"""The checks a run passes before anything slow starts (TensorFlow, a claimed directory), in one
place that `bnlab run`, `bnlab sweep`, the Python API and the sweep driver all call: each config's
memory fits this machine, each dataset it reads is there (and holds the classes its class_grouped
batches need), the device exists, XLA's compile cache can be written. Numpy at most: no TensorFlow."""

from __future__ import annotations

import json

from bn_lab import runtime
from bn_lab.config import footprint
from bn_lab.data import batches, datasets


def check(runs: list[tuple[dict, str]], device: str) -> None:
    """runs: (resolved config, how an error names it) of each run to come. Each distinct data
    section is checked once; the first problem raises (ConfigError, DataError, DeviceError,
    CacheError)."""
    for config, where in runs:
        footprint.check(config, where)
    sections: dict[str, str] = {}  # each data section once, named by its first run
    for config, where in runs:
        sections.setdefault(json.dumps(config["data"], sort_keys=True), where)
    for text, where in sections.items():
        data = json.loads(text)
        datasets.locate(data)
        if data["batch_order"] == "class_grouped":  # its classes are in the training labels it keeps
            labels = datasets.load(data).train.labels
            if problem := batches.class_grouped_problem(labels, data["classes_per_batch"]):
                raise datasets.DataError(f"{where}: {problem}")
    runtime.check_device(device)
    runtime.xla_cache_directory()
