"""The Ray executor on a real local Ray cluster (num_cpus=2): same layout, same numbers as local.

The cluster is started here and the sweep connects to it with --ray-address, as it would to
a remote one; cells run in Ray workers' temporary directories and come back packed.
"""

import json
import os
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")  # a dependency of ray's; used to see what the cluster leaves behind

pytestmark = pytest.mark.ray
# Ray renices its workers to 15; the suite runs on two pytest workers at once, and a niced cell
# starved behind the other one's training (~90 s for 4 cells instead of ~25). Read by the
# clusters these tests start, directly or through a `bnlab sweep` process.
os.environ["RAY_worker_niceness"] = "0"

from tests.conftest import bnlab  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "sweep_smoke.yaml"
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
    done = bnlab("sweep", REPO / "configs" / "smoke.yaml", "--grid", "model.activation=relu", "--name", "one_cell",
                 "--set", "train.steps=20", "--executor", "ray", "--results", tmp_path, timeout=300, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 of 1 cells finished" in done.stdout
    assert [p.name for p in (tmp_path / "one_cell").iterdir() if (p / "summary.json").is_file()] == ["relu_seed0"]
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


def test_ray_executor_writes_the_same_layout_and_numbers_as_local(cluster, smoke_sweep, tmp_path):
    # The reference: the session's smoke sweep, run locally (--jobs 1); its seed-0 cells are these.
    local = smoke_sweep[0]
    done = bnlab("sweep", SMOKE, "--seeds", "0", "--executor", "ray", "--ray-address", cluster, "--results", tmp_path / "ray",
                 timeout=300)
    assert done.returncode == 0, done.stderr
    remote = tmp_path / "ray" / "smoke_grid"

    assert sorted(p.name for p in remote.iterdir() if p.is_dir() and not p.name.startswith(".")) == sorted(CELLS)
    assert [p.name for p in remote.iterdir() if p.name.startswith(".") and p.name != ".lock"] == []  # no unpack leftovers
    for cell in CELLS:
        assert _files(remote / cell) == _files(local / cell), cell  # incl. tensorboard/<variant>/events...
        for name in ("metrics.csv", "config.yaml"):
            assert (remote / cell / name).read_bytes() == (local / cell / name).read_bytes(), (cell, name)
        summaries = [json.loads((d / cell / "summary.json").read_text()) for d in (remote, local)]
        assert _comparable(summaries[0]) == _comparable(summaries[1]), cell
    for name in ("sweep.json", "summary.csv", "report.md", "heatmap.png", "curves.png"):
        assert (remote / name).is_file(), name
    assert "4 of 4 cells finished" in done.stdout
