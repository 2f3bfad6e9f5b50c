"""Datasets as registry entries (bn_lab.data.datasets): an npz of any image shape and class count,
checked before TensorFlow starts and trained on by the MLP and the conv net; Keras' cache layout;
a dataset that cannot be fetched here is one line."""

import gzip
import json
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from bn_lab.config import declared
from bn_lab.config import loading as config
from bn_lab.config.yaml_io import ConfigError
from bn_lab.data import datasets, keras_datasets
from bn_lab.data.datasets import DataError
from tests.conftest import ROOT

CLASSES = 5


def write_npz(path, train=600, test=200, shape=(32, 32, 3), classes=CLASSES, **replace):
    """An npz as Keras' load_data() returns it: uint8 images whose mean brightness says the class
    (learnable in a few steps), integer labels."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", train), ("test", test)):
        labels = rng.integers(0, classes, n)
        images = rng.integers(0, 60, (n, *shape)) + (labels * (190 // classes)).reshape(-1, *([1] * len(shape)))
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images.astype(np.uint8), labels.astype(np.uint8)
    arrays.update(replace)
    np.savez(path, **arrays)
    return path


@pytest.fixture
def npz_file(tmp_path):
    return write_npz(tmp_path / "colours.npz")


def npz_config(path, **dotted):
    base = {
        "data": {"dataset": "npz", "path": str(path), "validation_size": 100},
        "model": {"name": "mlp", "hidden_units": [16, 12]},
        "optimizer": {"learning_rate": 0.1},
        "train": {"batch_size": 20, "steps": 30, "eval_every": 15, "single_samples": 10},
        "precise_bn": {"images": 100},
        "diagnostics": {"enabled": False},
    }
    return config.validate(config.apply_overrides(base, dotted))


def test_an_npz_declares_its_shape_classes_and_splits_and_the_models_follow(npz_file):
    c = npz_config(npz_file)
    dataset = declared.dataset(c)
    assert (dataset.image_shape, dataset.classes) == ((32, 32, 3), CLASSES)
    assert dataset.sizes == {"train": 500, "validation": 100, "test": 200}
    mlp = declared.architecture(c)
    assert mlp.input_shape == (3072,) and mlp.layers[0].kernel_shape == (3072, 16)
    assert mlp.layers[-1].kernel_shape == (12, CLASSES)
    conv = declared.architecture(npz_config(npz_file, **{"model.name": "convnet", "model.conv_layers": 4}))
    assert conv.input_shape == (32, 32, 3) and conv.layers[0].kernel_shape == (3, 3, 3, 4)
    # 32 -> 32 -> 32 -> 16 -> 16 with "same" padding and stride 2 at the third layer
    assert conv.layers[3].output_shape == (16, 16, 16) and conv.layers[4].kernel_shape == (16 * 16 * 16, 100)
    assert conv.layers[-1].kernel_shape == (100, CLASSES)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_a_run_trains_on_an_npz_of_colour_images_in_five_classes(npz_file, tmp_path, model):
    from bn_lab import api
    from bn_lab.training import launch

    c = npz_config(npz_file, **{"model.name": model, "model.conv_layers": 3, "model.dense_units": 8})
    run = api.load(launch.run_config(c, out=tmp_path / model, progress="none"))
    labels = np.load(npz_file)["y_train"][:100]
    assert run.summary["tf1_diverged_val_accuracy"] == pytest.approx(float(np.mean(labels == 0)))
    assert run.summary["variants"]["with_bn"]["outcome"] in ("learned", "near chance", "collapsed")
    kernel = run.weights("with_bn")["layer1/kernel"]
    assert kernel.shape == ((3072, 16) if model == "mlp" else (3, 3, 3, 4))
    output_layer = 3 if model == "mlp" else 5  # two hidden layers; three convolutions and a dense layer
    assert run.weights("with_bn")[f"layer{output_layer}/kernel"].shape[-1] == CLASSES
    environment = json.loads((tmp_path / model / "environment.json").read_text())
    assert environment["data"]["dataset"] == "npz" and environment["data"]["path"] == str(npz_file)
    assert environment["data"]["sizes"] == {"train": 500, "validation": 100, "test": 200}


BAD_NPZ = {
    "no y_test": ({"y_test": None}, "no y_test; an npz dataset holds x_train, y_train, x_test, y_test"),
    "float images": ({"x_train": np.zeros((600, 32, 32, 3), np.float32)}, "x_train is float32 (600, 32, 32, 3)"),
    "labels out of range": ({"y_test": np.full(200, -1, np.int64)}, "labels -1..4; allowed: 0..K−1"),
    "counts differ": ({"y_train": np.zeros(599, np.uint8)}, "600 images in x_train but 599 labels in y_train"),
    "shapes differ": (
        {"x_test": np.zeros((200, 16, 16, 3), np.uint8)},
        "x_train's images are (32, 32, 3), x_test's (16, 16, 3)",
    ),
    "one class": (
        {"y_train": np.zeros(600, np.uint8), "y_test": np.zeros(200, np.uint8)},
        "a classification needs at least 2 classes",
    ),
}


def write_bad(path, change: dict):
    arrays = dict(np.load(write_npz(path)))
    for key, value in change.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)


# Runs `bnlab run` in this process (click's main) and says whether TensorFlow was imported.
_RUN_IN_PROCESS = """
import sys
from bn_lab.cli import main
try:
    main(sys.argv[1:], prog_name="bnlab")
except SystemExit as e:
    print("exit", e.code)
print("tensorflow", "tensorflow" in sys.modules)
"""


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_a_bad_npz_is_one_line_naming_the_file_before_tensorflow(tmp_path, case):
    change, expected = BAD_NPZ[case]
    path = tmp_path / "bad.npz"
    write_bad(path, change)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(f"data: {{dataset: npz, path: {path}, validation_size: 100}}\n")
    done = subprocess.run(
        [sys.executable, "-c", _RUN_IN_PROCESS, "run", str(config_file), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {config_file}: data.path: {path}: "), done.stderr
    assert expected in lines[0]
    assert "exit 2" in done.stdout and "tensorflow False" in done.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"dataset": "npz", "path": None}, "data.dataset is 'npz' but data.path is not set"),
        ({"dataset": "npz", "path": "/nonexistent/x.npz"}, "data.path: /nonexistent/x.npz: no such file"),
        ({"dataset": "npz", "validation_size": 600}, "data.validation_size must be in 1..599"),
        ({"dataset": "mnist", "validation_size": 60000}, "data.validation_size must be in 1..59999"),
        ({"dataset": "npz", "val_limit": 101}, "data.val_limit must be <= 100"),
        ({"dataset": "npz", "classes_per_batch": 6}, "data.classes_per_batch 6 is more than the dataset's 5 classes"),
    ],
)
def test_data_keys_are_checked_against_the_datasets_declaration(npz_file, data, expected):
    data = {"path": str(npz_file), "validation_size": 100, **data}
    with pytest.raises(ConfigError) as caught:
        config.validate({"data": data}, "run.yaml")
    assert str(caught.value).startswith("run.yaml: ") and expected in str(caught.value), str(caught.value)


def idx_gz(path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(">II", magic, len(array)) + b"".join(struct.pack(">I", d) for d in array.shape[1:])
    path.write_bytes(gzip.compress(header + array.tobytes(), compresslevel=1))


def test_fashion_mnist_is_read_from_keras_cache_layout(tmp_path, monkeypatch):
    """$KERAS_HOME/datasets/fashion-mnist/ with Keras' four file names, as its loader leaves them."""
    folder = tmp_path / "keras" / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    labels = {"train": rng.integers(0, 10, 60000).astype(np.uint8), "t10k": rng.integers(0, 10, 10000).astype(np.uint8)}
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", 2051, np.full((n, 28, 28), 7, np.uint8))
        idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", 2049, labels[prefix])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    data = {**config.defaults()["data"], "dataset": "fashion_mnist", "val_limit": 300}
    assert datasets.locate(data) == str(folder)
    loaded = datasets.load(data)
    assert loaded.declaration.image_shape == (28, 28, 1) and loaded.declaration.classes == 10
    assert loaded.describe()["sizes"] == {"train": 55000, "validation": 300, "test": 10000}
    assert np.array_equal(loaded.validation.labels, labels["train"][:300])
    assert np.array_equal(loaded.train.labels[:10], labels["train"][5000:5010])
    assert loaded.provenance["source"] == "keras" and loaded.train.images.shape == (55000, 784)


def test_a_keras_dataset_that_cannot_be_fetched_here_is_one_line(tmp_path, monkeypatch):
    """No copy in Keras' cache and its server out of reach (this machine has no internet; the
    network check is replaced so the test is the same on one that has)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(keras_datasets, "_reachable", lambda url: "www.cs.toronto.edu cannot be reached (offline)")
    with pytest.raises(DataError) as caught:
        datasets.locate({**config.defaults()["data"], "dataset": "cifar10"})
    message = str(caught.value)
    assert message.startswith("data.dataset cifar10: not in Keras' cache (")
    assert (
        "cifar-10-batches-py" in message and "cannot be fetched here: www.cs.toronto.edu cannot be reached" in message
    )


def test_cifar10_batches_are_unpickled_with_arrays_only(tmp_path):
    good = {
        b"data": np.arange(20 * 3072, dtype=np.uint64).astype(np.uint8).reshape(20, 3072),
        b"labels": list(range(10)) * 2,
    }
    (tmp_path / "batch").write_bytes(pickle.dumps(good, protocol=2))
    images, labels, _ = keras_datasets.read_cifar10_batch(tmp_path / "batch", 20)
    assert images.shape == (20, 32, 32, 3) and labels.tolist() == list(range(10)) * 2
    # channels first in the file: pixel (0, 0) of image 0 holds values 0, 1024, 2048 (mod 256)
    assert images[0, 0, 0].tolist() == [0, 1024 % 256, 2048 % 256]

    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match=r"not a CIFAR-10 batch .*print is not allowed in a dataset file"):
        keras_datasets.read_cifar10_batch(tmp_path / "evil", 20)
