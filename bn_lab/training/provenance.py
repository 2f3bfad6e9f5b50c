"""Where a run came from: the versions, the machine, the seed, the data and the command, as
environment.json records them."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(config: dict, device: dict, data_description: dict, command_line: str | None) -> dict:
    import importlib.metadata

    import keras
    import numpy
    import tensorflow as tf

    return {
        "bn_lab": importlib.metadata.version("bn_lab"),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "host": platform.node(),  # which machine of a Ray cluster ran it
        "pid": os.getpid(),  # which process of a sweep ran it
        "cpu_count": os.cpu_count(),
        **device,
        "seed": config["seed"],
        "data": data_description,
        "git_commit": _git_commit(),
        "command_line": command_line if command_line is not None else shlex.join(sys.argv),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
