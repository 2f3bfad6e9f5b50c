"""The checks a run passes before anything slow starts (TensorFlow, a claimed directory, data read),
in one place that `bnlab run`, `bnlab sweep`, the Python API and the sweep driver all call: each
config's memory fits this machine, each dataset it reads is there, the device exists. Pure Python."""

from __future__ import annotations

import json

from bn_lab import runtime
from bn_lab.config import footprint
from bn_lab.data import datasets


def check(runs: list[tuple[dict, str]], device: str) -> None:
    """runs: (resolved config, how an error names it) of each run to come. Each distinct data
    section is located once; the first problem raises (ConfigError, DataError, DeviceError)."""
    for config, where in runs:
        footprint.check(config, where)
    for data in {json.dumps(config["data"], sort_keys=True) for config, _ in runs}:
        datasets.locate(json.loads(data))
    runtime.check_device(device)
