"""bn_lab: reproducible batch-normalization experiments on MNIST with TensorFlow 2 / Keras.

The Python API (see bn_lab.api): `bn_lab.run(config, seed=..., **overrides)` trains a pair
and returns a `Run`; `bn_lab.load(run_dir)` reads one back; `bn_lab.sweep(sweep_file)` and
`bn_lab.load_sweep(sweep_dir)` do the same for sweeps. `import bn_lab` imports neither
TensorFlow nor matplotlib: they load when a run trains or a figure is drawn.
"""

import importlib.metadata
import os

# TensorFlow's C++ log lines are noise in a CLI: its start-up chatter (oneDNN, CUDA stubs), and an
# error line for every entry XLA's compile cache loads (its reader tries the text format first;
# bn_lab.runtime). TensorFlow's errors that matter reach Python as exceptions.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = importlib.metadata.version("bn_lab")  # pyproject.toml's, the one place it is written

# The Python API: each name, and the module that defines it (imported when first used).
API = {
    "run": "bn_lab.api",
    "load": "bn_lab.api",
    "sweep": "bn_lab.api",
    "load_sweep": "bn_lab.api",
    "IncompleteSweep": "bn_lab.api",
    "Run": "bn_lab.report.finished",
    "SweepRun": "bn_lab.report.finished",
}
__all__ = list(API)


def __getattr__(name: str):
    if name in API:
        import importlib

        return getattr(importlib.import_module(API[name]), name)
    raise AttributeError(f"module 'bn_lab' has no attribute {name!r}")
