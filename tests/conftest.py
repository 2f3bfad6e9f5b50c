import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bn_lab import runtime  # light: TensorFlow loads in runtime.configure()

# Test modules import TensorFlow before any fixture runs: choose its kernels as bnlab does first.
os.environ.setdefault(runtime.ONEDNN_ENV, "1" if runtime.ONEDNN else "0")

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


def _session_dir(tmp_path_factory) -> Path:
    """This test session's temporary directory, the same for every pytest-xdist worker."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # above every worker's own


@pytest.fixture(autouse=True)
def signal_handlers_kept(request):
    """bn_lab called in a process (the API, a claim, a sweep in process) leaves its signal handlers
    as it found them: a test after one that did not would see Ctrl-C ignored."""
    import signal

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    changed = [s.name for s, handler in before.items() if signal.getsignal(s) is not handler]
    for s, handler in before.items():
        signal.signal(s, handler)
    assert not changed, f"{request.node.nodeid} left the handler of {', '.join(changed)} changed"


_SAVED_ENV: dict = {}


@pytest.hookimpl(trylast=True)  # after pytest's own tmp_path plugin has set up its factory
def pytest_configure(config):
    """Tests never read or write the user's ~/.cache/bn_lab or ~/.keras: one cache per session.

    Set here, before test modules import TensorFlow (it reads TF_XLA_FLAGS at its import): XLA's
    compiled code goes into the session's cache too (bn_lab.runtime.use_xla_cache), so a network
    compiled by one test is loaded by the next. Subprocesses (the CLI tests) inherit it through the
    environment. pytest-xdist's workers share it (bn_lab and TensorFlow write their caches
    atomically): MNIST is converted into it once, not once a worker.
    """
    shared = _session_dir(config._tmp_path_factory)  # the tmp_path_factory fixture's, before any fixture
    cache, keras_home = shared / "bnlab-cache", shared / "keras-home"
    cache.mkdir(exist_ok=True)
    keras_home.mkdir(exist_ok=True)
    _SAVED_ENV.update({k: os.environ.get(k) for k in ("BNLAB_CACHE_DIR", "KERAS_HOME", runtime.TF_XLA_FLAGS)})
    os.environ["BNLAB_CACHE_DIR"] = str(cache)
    os.environ["KERAS_HOME"] = str(keras_home)
    runtime.use_xla_cache()


def pytest_unconfigure(config):
    for key, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_runtest_setup(item):
    """TensorFlow in this process as `bnlab run` sets it up (pinned threads, op determinism), for
    the tests that need it and only them: those that train (`slow`) or build TensorFlow tensors
    (`tensorflow`). runtime.configure must come before any TensorFlow op, once per process: here,
    before such a test, whichever comes first; a later call is free. The fast tier (`-m "not
    slow"`) trains nothing."""
    if item.get_closest_marker("slow") or item.get_closest_marker("tensorflow"):
        runtime.configure("auto")


@pytest.fixture(scope="session")
def mnist_small():
    """Real MNIST, cut to small splits for quick training."""
    from bn_lab.data import mnist as data

    return data.load_mnist(train_limit=2000, val_limit=500, test_limit=500)


# The `bnlab` command, as a process: this checkout's, whatever is installed (the same code the
# console script runs). Every test that runs the CLI uses this, through bnlab() or Popen.
BNLAB = [sys.executable, "-m", "bn_lab.cli"]


def bnlab(*args, cwd=None, timeout=600, env=None, background=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    """Runs `bnlab ARGS` as a user would, in a process of its own; returns the CompletedProcess.

    background=True: returns the running Popen at once (for signals and races); stdout and
    stderr say where its output goes.
    """
    command = [*BNLAB, *map(str, args)]
    if background:
        return subprocess.Popen(command, cwd=cwd or ROOT, text=True, stdout=stdout, stderr=stderr, env=env)
    return subprocess.run(command, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=env)


SWEEP_SMOKE = CONFIGS / "sweep_smoke.yaml"
# What a run without the diagnostics writes (smoke.yaml, a smoke sweep's cell), exactly.
RUN_FILES = {
    "config.yaml",
    "environment.json",
    "metrics.csv",
    "summary.json",
    "weights.npz",
    "accuracy.png",
    "batch_size_curve.png",
    "tensorboard",
}


# Runs `bnlab sweep` and records how it ended (written atomically: its presence means done).
_SWEEP_AND_RECORD = """
import json, os, subprocess, sys
command, record = json.loads(sys.argv[1]), sys.argv[2]
done = subprocess.run(command, capture_output=True, text=True, timeout=300)
with open(record + ".tmp", "w") as f:
    json.dump({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}, f)
os.replace(record + ".tmp", record)
"""


def _smoke_sweep_started(tmp_path_factory) -> tuple[Path, Path]:
    """Starts configs/sweep_smoke.yaml in the background, once per test session; (results, record).

    With pytest-xdist the workers share it: the first to get here starts it, under a lock.
    """
    import fcntl

    shared = _session_dir(tmp_path_factory)
    results, record = shared / "smoke-sweep", shared / "smoke-sweep.json"
    with open(shared / "smoke-sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "smoke-sweep.started").exists():
            (shared / "smoke-sweep.started").touch()
            command = [*BNLAB, "sweep", str(SWEEP_SMOKE), "--results", str(results)]
            subprocess.Popen([sys.executable, "-c", _SWEEP_AND_RECORD, json.dumps(command), str(record)], cwd=ROOT)
    return results, record


@pytest.fixture(scope="session", autouse=True)
def smoke_sweep_under_way(request, tmp_path_factory):
    """If any test of this session needs the smoke sweep, it starts with the session, in the
    background: the tests that read it then seldom wait, and no worker sits idle until it ends."""
    if any("smoke_sweep" in item.fixturenames for item in request.session.items):
        _smoke_sweep_started(tmp_path_factory)


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """configs/sweep_smoke.yaml (8 cells), swept once per test session by `bnlab sweep`.

    (sweep directory, the CompletedProcess). Tests only read it; a test that changes a sweep
    copies it first.
    """
    results, record = _smoke_sweep_started(tmp_path_factory)
    deadline = time.monotonic() + 330
    while not record.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert record.is_file(), f"the session's smoke sweep ({results}) did not end within 330 s"
    done = subprocess.CompletedProcess(["bnlab", "sweep"], **json.loads(record.read_text()))
    assert done.returncode == 0, done.stderr
    return results / "smoke_grid", done


def _mount(*args) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only directory: a read-only bind mount (permissions alone do not stop root)."""
    source, target = tmp_path / "ro-source", tmp_path / "read-only"
    source.mkdir()
    target.mkdir()
    if not (_mount("--bind", source, target) and _mount("-o", "remount,ro,bind", target)):
        subprocess.run(["umount", str(target)], capture_output=True)
        pytest.skip("cannot make a read-only bind mount here (needs root)")
    yield target
    subprocess.run(["umount", str(target)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 48 KiB: room for a run's first files, not for all of them."""
    target = tmp_path / "small-disk"
    target.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=48k", "tmpfs", target):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield target
    subprocess.run(["umount", str(target)], check=True)


TINY_DATA = {"train_limit": 600, "val_limit": 200, "test_limit": 100}


def tiny_mlp_config(**dotted) -> dict:
    """An MLP of 16 and 12 units on 600 training images, 40 steps, diagnostics off: a pair trains in a second or two.

    dotted: config overrides by dotted key, e.g. tiny_mlp_config(**{"bn.backend": "manual"}).
    """
    from bn_lab.config import loading as config

    base = {
        "model": {"name": "mlp", "activation": "relu", "hidden_units": [16, 12]},
        "optimizer": {"learning_rate": 0.5},
        "train": {"batch_size": 30, "steps": 40, "eval_every": 20, "jit_compile": False, "single_samples": 20},
        "precise_bn": {"images": 300},
        # Off: they would be most of a tiny run's time; the tests of the diagnostics turn them on.
        "diagnostics": {"enabled": False},
        "data": dict(TINY_DATA),
    }
    return config.validate(config.apply_overrides(base, dotted))


@pytest.fixture(scope="session")
def tiny_mnist():
    from bn_lab.data import mnist as data

    return data.load_mnist(**TINY_DATA)


def initial_weights(config: dict) -> list:
    """The run's initial weights for a resolved config (its model, for its dataset's images)."""
    from bn_lab.config import declared
    from bn_lab.nets import weights

    return weights.initial_weights(config, declared.architecture(config))


def build_network(config: dict, initial: list, arm, **options):
    """One arm's network of a resolved config, as the trainer builds it (options: fast=...)."""
    from bn_lab.config import declared
    from bn_lab.nets import network

    return network.build(config, declared.architecture(config), initial, arm, **options)


def snapshot(network) -> list:
    """Copies of every weight and population statistic of a network, to compare bit for bit."""
    return [v.numpy().copy() for v in network.parameters + network.population_statistics]


NUMPY_ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


def numpy_mlp(arrays: dict, images: np.ndarray, activation: str, epsilon: float = 1e-3, statistics=None):
    """A saved MLP (weights.npz's arrays of one network, BN before the activation) by hand, in float64.

    statistics: "population" (inference mode, the saved population statistics), None (training
    mode: each BN layer normalises with the batch's own moments) or per-layer (mean, variance).
    Returns (logits, every hidden layer's input to its activation, every BN layer's batch moments).
    """
    layers = sorted({int(name.split("/")[0][len("layer") :]) for name in arrays})
    h, inputs, moments = images.reshape(len(images), -1).astype(np.float64) / 255.0, [], []
    for k in layers[:-1]:
        z = h @ arrays[f"layer{k}/kernel"].astype(np.float64)
        if f"layer{k}/bias" in arrays:
            z = z + arrays[f"layer{k}/bias"]
        if f"layer{k}/gamma" in arrays:
            moments.append((z.mean(axis=0), z.var(axis=0)))  # biased, as BN's training mode uses
            if statistics is None:
                mean, variance = moments[-1]
            elif statistics == "population":
                mean, variance = arrays[f"layer{k}/population_mean"], arrays[f"layer{k}/population_variance"]
            else:
                mean, variance = statistics[k - 1]
            z = (z - mean) / np.sqrt(variance + epsilon) * arrays[f"layer{k}/gamma"] + arrays[f"layer{k}/beta"]
        inputs.append(z)
        h = NUMPY_ACTIVATIONS[activation](z)
    last = layers[-1]
    return h @ arrays[f"layer{last}/kernel"] + arrays[f"layer{last}/bias"], inputs, moments


def numpy_loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean softmax cross-entropy and accuracy, by hand."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    loss = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(labels)), labels]
    return float(loss.mean()), float((logits.argmax(axis=1) == labels).mean())
