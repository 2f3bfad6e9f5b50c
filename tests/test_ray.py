"""The Ray executor on a real local Ray cluster (num_cpus=2): same layout, same numbers as local.

The cluster is started here and the sweep connects to it with --ray-address, as it would to
a remote one; cells run in Ray workers' temporary directories and come back packed.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")  # a dependency of ray's; used to see what the cluster leaves behind

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "sweep_smoke.yaml"
BNLAB = Path(sys.executable).with_name("bnlab")
CELLS = ["relu_goodinit_seed0", "relu_badinit_seed0", "sigmoid_goodinit_seed0", "sigmoid_badinit_seed0"]
# What may differ between two runs of the same cell: clocks and where it ran.
VOLATILE = {"wall_seconds", "train_seconds", "steps_per_second"}


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


RAY_DAEMONS = {"gcs_server", "raylet"}


def _ray_daemons() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in RAY_DAEMONS}


def test_without_an_address_a_sweep_starts_its_own_local_cluster_and_stops_it(tmp_path):
    # Runs before the module's cluster exists: nothing to connect to by accident.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    before = _ray_daemons()
    done = subprocess.run(
        [str(BNLAB), "sweep", SMOKE, "--seeds", "0", "--executor", "ray", "--results", tmp_path],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "4 of 4 cells finished" in done.stdout
    assert sorted(p.name for p in (tmp_path / "smoke_grid").iterdir() if (p / "summary.json").is_file()) == sorted(CELLS)
    deadline = time.monotonic() + 20
    while _ray_daemons() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ray_daemons() - before == set(), "the sweep's local Ray cluster outlived it"


@pytest.fixture(scope="module")
def cluster():
    before = _descendants()
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        deadline = time.monotonic() + 20
        while _descendants() - before and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [psutil.Process(pid).name() for pid in _descendants() - before if psutil.pid_exists(pid)]
        assert not left, f"Ray left processes behind: {left}"


def _files(root: Path) -> set[str]:
    """Relative paths; TensorBoard event files are named after the clock, host and pid."""
    names = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}
    return {n.split(".out.tfevents.")[0] + ".out.tfevents.*" if ".out.tfevents." in n else n for n in names}


def _comparable(summary: dict) -> dict:
    summary = {k: v for k, v in summary.items() if k not in VOLATILE}
    summary["variants"] = {n: {k: v for k, v in r.items() if k not in VOLATILE} for n, r in summary["variants"].items()}
    return summary


def test_ray_executor_writes_the_same_layout_and_numbers_as_local(cluster, tmp_path):
    def sweep_smoke(*args):
        return subprocess.run(
            [str(BNLAB), "sweep", SMOKE, "--seeds", "0", *map(str, args)], capture_output=True, text=True, timeout=300
        )

    # The reference in a process of its own: TensorFlow in this one may be set up by other tests.
    reference = sweep_smoke("--results", tmp_path / "local")
    assert reference.returncode == 0, reference.stderr
    done = sweep_smoke("--executor", "ray", "--ray-address", cluster, "--results", tmp_path / "ray")
    assert done.returncode == 0, done.stderr
    local, remote = tmp_path / "local" / "smoke_grid", tmp_path / "ray" / "smoke_grid"

    assert sorted(p.name for p in remote.iterdir() if p.is_dir() and not p.name.startswith(".")) == sorted(CELLS)
    assert [p.name for p in remote.iterdir() if p.name.startswith(".") and p.name != ".lock"] == []  # no unpack leftovers
    for cell in CELLS:
        assert _files(remote / cell) == _files(local / cell), cell  # incl. tensorboard/<variant>/events...
        assert (remote / cell / "metrics.csv").read_bytes() == (local / cell / "metrics.csv").read_bytes(), cell
        assert (remote / cell / "config.yaml").read_bytes() == (local / cell / "config.yaml").read_bytes(), cell
        summaries = [json.loads((d / cell / "summary.json").read_text()) for d in (remote, local)]
        assert _comparable(summaries[0]) == _comparable(summaries[1]), cell
    for name in ("sweep.json", "summary.csv", "report.md", "heatmap.png", "curves.png"):
        assert (remote / name).is_file(), name
    assert (remote / "report.md").read_text() == (local / "report.md").read_text()  # no clock in it
    assert "4 of 4 cells finished" in done.stdout
