import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


@pytest.fixture(scope="session", autouse=True)
def isolated_data_cache(tmp_path_factory):
    """Tests never read or write the user's ~/.cache/bn_lab or ~/.keras: one cache per session.

    Subprocesses (the CLI tests) inherit it through the environment.
    """
    cache = tmp_path_factory.mktemp("bnlab-cache")
    keras_home = tmp_path_factory.mktemp("keras-home")
    saved = {k: os.environ.get(k) for k in ("BNLAB_CACHE_DIR", "KERAS_HOME")}
    os.environ["BNLAB_CACHE_DIR"] = str(cache)
    os.environ["KERAS_HOME"] = str(keras_home)
    yield cache
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def mnist_small():
    """Real MNIST, cut to small splits for quick training."""
    from bn_lab import data

    return data.load_mnist(train_limit=2000, val_limit=500, test_limit=500)


def bnlab(*args, cwd=None, timeout=600):
    """Runs the installed `bnlab` command as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "bn_lab.cli", *map(str, args)],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
