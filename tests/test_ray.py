"""The Ray executor on a real local Ray cluster: same layout, same numbers as local.

The sweep starts its cluster itself (no --ray-address) and stops it at the end; cells run in
Ray workers' temporary directories and come back packed, as they would from a remote cluster.
"""

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")  # a dependency of ray's; used to see what the cluster leaves behind

pytestmark = pytest.mark.ray
# Ray renices its workers to 15; the suite runs on two pytest workers at once, and a niced cell
# starved behind the other one's training (~90 s for 4 cells instead of ~25). Read by the
# cluster the `bnlab sweep` process below starts.
os.environ["RAY_worker_niceness"] = "0"

from tests.conftest import bnlab  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "sweep_smoke.yaml"
CELLS = ["relu_goodinit_seed0", "relu_badinit_seed0", "sigmoid_goodinit_seed0", "sigmoid_badinit_seed0"]
# What may differ between two runs of the same cell: clocks and where it ran.
VOLATILE = {"wall_seconds", "train_seconds", "steps_per_second", "timings"}
RAY_DAEMONS = {"gcs_server", "raylet"}


def _ray_daemons() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in RAY_DAEMONS}


def _files(root: Path) -> set[str]:
    """Relative paths; TensorBoard event files are named after the clock, host and pid."""
    names = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}
    return {n.split(".out.tfevents.")[0] + ".out.tfevents.*" if ".out.tfevents." in n else n for n in names}


def _comparable(summary: dict) -> dict:
    summary = {k: v for k, v in summary.items() if k not in VOLATILE}
    summary["variants"] = {n: {k: v for k, v in r.items() if k not in VOLATILE} for n, r in summary["variants"].items()}
    return summary


@pytest.mark.slow
def test_ray_executor_writes_the_same_layout_and_numbers_as_local_on_a_cluster_of_its_own(smoke_sweep, tmp_path):
    # The reference: the session's smoke sweep, run locally (--jobs 1); its seed-0 cells are these.
    local = smoke_sweep[0]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # nothing to connect to by accident
    before = _ray_daemons()
    done = bnlab(
        "sweep", SMOKE, "--seeds", "0", "--executor", "ray", "--results", tmp_path / "ray", timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    remote = tmp_path / "ray" / "smoke_grid"

    assert sorted(p.name for p in remote.iterdir() if p.is_dir() and not p.name.startswith(".")) == sorted(CELLS)
    assert [
        p.name for p in remote.iterdir() if p.name.startswith(".") and p.name != ".lock"
    ] == []  # no unpack leftovers
    for cell in CELLS:
        assert _files(remote / cell) == _files(local / cell), cell  # incl. tensorboard/<variant>/events...
        for name in ("metrics.csv", "config.yaml"):
            assert (remote / cell / name).read_bytes() == (local / cell / name).read_bytes(), (cell, name)
        summaries = [json.loads((d / cell / "summary.json").read_text()) for d in (remote, local)]
        assert _comparable(summaries[0]) == _comparable(summaries[1]), cell
    # The report over the same cells: its table rows are the local sweep's seed-0 cells', number for number.
    with open(remote / "summary.csv", newline="") as f:
        rows = {r["cell"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == sorted(CELLS)
    with open(local / "summary.csv", newline="") as f:
        local_rows = {r["cell"]: r for r in csv.DictReader(f) if r["cell"] in CELLS}
    for cell in CELLS:
        same = [k for k in rows[cell] if not any(v in k for v in VOLATILE) and "point_" not in k]
        assert {k: rows[cell][k] for k in same} == {k: local_rows[cell][k] for k in same}, cell
    assert json.loads((remote / "sweep.json").read_text())["cells"] == [
        c for c in json.loads((local / "sweep.json").read_text())["cells"] if c["name"] in CELLS
    ]
    for name in ("heatmap.png", "curves.png"):
        assert (remote / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "4 of 4 cells finished" in done.stdout

    deadline = time.monotonic() + 20  # the sweep's own cluster ends with it
    while _ray_daemons() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ray_daemons() - before == set(), "the sweep's local Ray cluster outlived it"


@pytest.mark.slow
def test_an_address_where_no_cluster_listens_is_one_line_before_anything_runs(tmp_path):
    import socket

    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    done = bnlab("sweep", SMOKE, "--executor", "ray", "--ray-address", address, "--results", tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: --ray-address {address}: cannot reach a Ray cluster there (")
    assert done.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigterm_stops_a_ray_sweep_with_bnlabs_line_and_its_cluster(tmp_path):
    """ray.init puts its own SIGTERM handler in (exit 1 and Ray's dump, none of bnlab's lines): bnlab's
    goes back, the sweep ends as a local one does, and its cluster with it (issue 33)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    before = _ray_daemons()
    results = tmp_path / "ray"
    sweep = bnlab(
        "sweep", SMOKE, "--seeds", "0", "--executor", "ray", "--results", results, "--set", "train.steps=100000",
        env=env, background=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (results / "smoke_grid" / "sweep.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(5)  # the cells under way on the cluster
    sweep.send_signal(signal.SIGTERM)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, stderr
    assert stderr == "terminated (SIGTERM): nothing incomplete was left looking complete\n"
    assert not [p for p in (results / "smoke_grid").iterdir() if p.is_dir()]  # no cell, no staging left
    deadline = time.monotonic() + 20
    while _ray_daemons() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ray_daemons() - before == set()
