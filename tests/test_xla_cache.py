"""XLA's compiled code kept between runs (bn_lab.runtime.use_xla_cache): a later run loads what an
earlier one compiled, and its numbers are the same bits; an unusable cache is one line up front."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bn_lab import runtime
from bn_lab.data.mnist import CACHE_FILENAME
from tests.conftest import CONFIGS, bnlab
from tests.test_cli import one_error_line

# The smoke run with XLA on (the MLP's training loop compiled), evaluated twice.
XLA_SMOKE = ("--set", "train.jit_compile=true", "--set", "train.steps=40", "--set", "train.eval_every=20", "--quiet")


def users_env(cache: Path) -> dict:
    """This process's environment as a user's (without TF_XLA_FLAGS: the test session's name its
    own XLA cache), with bn_lab's cache at `cache`."""
    env = {k: v for k, v in os.environ.items() if k != runtime.TF_XLA_FLAGS}
    return {**env, "BNLAB_CACHE_DIR": str(cache)}


def own_cache(cache: Path) -> dict:
    """users_env of a new cache holding the session's converted MNIST (not converted again)."""
    cache.mkdir()
    (cache / CACHE_FILENAME).symlink_to(Path(os.environ["BNLAB_CACHE_DIR"]) / CACHE_FILENAME)
    return users_env(cache)


def compiled_files(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in (cache / "xla").rglob("*.pb")}


@pytest.mark.slow
def test_a_later_run_loads_the_compiled_code_and_gives_the_same_bits(tmp_path):
    cache = tmp_path / "cache"
    env = own_cache(cache)
    first = bnlab("run", CONFIGS / "smoke.yaml", "--out", tmp_path / "first", *XLA_SMOKE, env=env)
    assert first.returncode == 0, first.stderr
    written = compiled_files(cache)
    assert written, "the first run kept none of its compiled code"
    (directory,) = {Path(name).parent for name in written}
    recorded = json.loads((tmp_path / "first" / "environment.json").read_text())["xla_cache"]
    assert recorded == str(cache / directory)

    second = bnlab("run", CONFIGS / "smoke.yaml", "--out", tmp_path / "second", *XLA_SMOKE, env=env)
    assert second.returncode == 0, second.stderr
    assert compiled_files(cache) == written  # everything loaded: nothing compiled and written again
    assert "Error parsing" not in second.stderr  # TensorFlow's reader tries the text format first
    for name in ("metrics.csv", "weights.npz"):
        assert (tmp_path / "second" / name).read_bytes() == (tmp_path / "first" / name).read_bytes(), name


def test_the_cache_is_off_when_asked_or_when_tf_xla_flags_name_one(tmp_path, monkeypatch):
    monkeypatch.delenv(runtime.TF_XLA_FLAGS, raising=False)
    monkeypatch.setenv("BNLAB_CACHE_DIR", str(tmp_path))
    directory = runtime.xla_cache_directory()
    assert directory.parent == tmp_path / "xla" and directory.is_dir()
    monkeypatch.setenv(runtime.XLA_CACHE_ENV, "off")
    assert runtime.xla_cache_directory() is None
    monkeypatch.delenv(runtime.XLA_CACHE_ENV)
    monkeypatch.setenv(runtime.TF_XLA_FLAGS, "--tf_xla_auto_jit=0 --tf_xla_persistent_cache_directory=/mine")
    assert runtime.xla_cache_directory() is None  # the user's own, left as it is
    assert runtime.xla_cache_in_use() == "/mine"
    # Another TensorFlow, CPU or XLA_FLAGS: another directory (the entries' key holds none of them).
    monkeypatch.delenv(runtime.TF_XLA_FLAGS)
    monkeypatch.setenv("XLA_FLAGS", f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_max_isa=SSE4_2")
    assert runtime.xla_cache_directory() not in (None, directory)


def test_a_cache_that_cannot_be_written_is_one_line_before_anything_starts(tmp_path):
    not_a_directory = tmp_path / "cache"
    not_a_directory.write_text("")
    line = one_error_line(
        bnlab("run", CONFIGS / "smoke.yaml", "--out", tmp_path / "run", env=users_env(not_a_directory))
    )
    assert line.startswith(
        f"error: BNLAB_CACHE_DIR={not_a_directory}: cannot keep XLA's compiled code in {not_a_directory}/xla/"
    )
    assert line.endswith("(Not a directory); name a writable directory, or set BNLAB_XLA_CACHE=off")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


@pytest.mark.slow
def test_a_disk_without_room_for_the_cache_is_read_not_written(tmp_path):
    """A full disk where the cache lives failed the run at its first compiled call ("No space left
    on device", a traceback, seen on a 200 KB tmpfs). With less than XLA_CACHE_MIN_FREE left, the
    run reads the cache and writes nothing to it; here the margin is set above any disk's room."""
    cache = tmp_path / "cache"
    env = own_cache(cache)
    first = bnlab("run", CONFIGS / "smoke.yaml", "--out", tmp_path / "first", *XLA_SMOKE, env=env)
    assert first.returncode == 0, first.stderr
    written = compiled_files(cache)
    for entry in (cache / "xla").rglob("*.pb"):  # what a later run must compile again, and not keep
        entry.unlink()
    full = "from bn_lab import runtime; runtime.XLA_CACHE_MIN_FREE = 1 << 62; from bn_lab.cli import entry; entry()"
    command = [sys.executable, "-c", full, "run", CONFIGS / "smoke.yaml", "--out", tmp_path / "full", *XLA_SMOKE]
    run = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr
    assert written and compiled_files(cache) == {}
    environment = json.loads((tmp_path / "full" / "environment.json").read_text())
    assert environment["xla_cache_read_only"] is True and environment["xla_cache"] is not None
    assert json.loads((tmp_path / "first" / "environment.json").read_text())["xla_cache_read_only"] is False
    for name in ("metrics.csv", "weights.npz"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "first" / name).read_bytes(), name
