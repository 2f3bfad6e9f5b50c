"""`bnlab sweep` end to end through the CLI: real MNIST, real (tiny) training, real processes.

The smoke sweep (configs/sweep_smoke.yaml: 8 cells of ~2 s) runs once per test session with
--jobs 1 (conftest's smoke_sweep) and here once with --jobs 2, killed and resumed; the other
tests reuse those results where they can.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bn_lab.config.yaml_io import ConfigError
from bn_lab.sweeps import spec
from tests.conftest import ROOT, RUN_FILES, SWEEP_SMOKE, bnlab

REPO, SMOKE = ROOT, SWEEP_SMOKE
CELLS = [
    f"{activation}_{init}init_seed{seed}"
    for activation in ("relu", "sigmoid")
    for init in ("good", "bad")
    for seed in (0, 1)
]
SEED0 = [c for c in CELLS if c.endswith("_seed0")]  # the killed and resumed sweep's cells
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sweep_smoke(results: Path, *args) -> subprocess.CompletedProcess:
    done = bnlab("sweep", SMOKE, "--results", results, *args, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def complete_cells(sweep_dir: Path) -> set[str]:
    return {d.name for d in sweep_dir.iterdir() if (d / "summary.json").is_file()} if sweep_dir.is_dir() else set()


def summary(cell_dir: Path) -> dict:
    return json.loads((cell_dir / "summary.json").read_text())


@pytest.fixture
def jobs1(smoke_sweep):
    """The session's smoke sweep: `bnlab sweep configs/sweep_smoke.yaml`, --jobs 1."""
    return smoke_sweep


# --- a whole sweep ---------------------------------------------------------------------------


@pytest.mark.slow
def test_smoke_sweep_writes_every_cell_and_the_report(jobs1):
    sweep_dir, done = jobs1
    assert sorted(complete_cells(sweep_dir)) == sorted(CELLS)
    for cell in CELLS:
        cell_dir = sweep_dir / cell
        assert {p.name for p in cell_dir.iterdir()} == RUN_FILES
        config = yaml.safe_load((cell_dir / "config.yaml").read_text())
        point, seed = cell.rsplit("_seed", 1)
        assert config["experiment"] == point and config["seed"] == int(seed)
        assert config["model"]["activation"] == point.split("_")[0]
        assert config["init"]["scale"] == (0.05 if "goodinit" in point else 5.0)
        assert config["optimizer"]["learning_rate"] == 2.0 and config["train"]["steps"] == 60  # the sweep's `set:`
        assert (cell_dir / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    # The bad init makes relu's plain network diverge: recorded in the cell, and the sweep went on.
    assert summary(sweep_dir / "relu_badinit_seed0")["variants"]["without_bn"]["diverged"]
    assert not (sweep_dir / "failed.json").exists()
    assert not [p for p in sweep_dir.iterdir() if ".partial-" in p.name or ".unpack-" in p.name]

    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert [c["name"] for c in manifest["cells"]] == CELLS
    assert [a["key"] for a in manifest["axes"]] == ["model.activation", "init.scale"]

    # One line per finished cell (the log is not a terminal), then the report table.
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines if re.match(r"\[\d/8\] ", line)] == CELLS
    # The printed table, read by its cells (column widths follow the contents, which differ by CPU).
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    relu_bad = next(row for row in table if row[:2] == ["relu", "bad (5)"])
    # BN's outcomes from the cells' own summaries (a chaotic cell's outcome may differ by CPU)
    with_bn = [summary(sweep_dir / f"relu_badinit_seed{seed}")["variants"]["with_bn"]["outcome"] for seed in (0, 1)]
    kinds = ("learned", "near chance", "collapsed", "diverged")
    outcomes = ", ".join(f"{with_bn.count(o)} {o}" for o in kinds if with_bn.count(o))
    assert relu_bad[2:4] == ["2/2", "diverged (2/2)"]  # the printed table: seeds, each arm's late accuracy
    with open(sweep_dir / "report.md") as f:  # the whole table: the outcomes too
        whole = [[c.strip() for c in line.strip().strip("|").split("|")] for line in f if line.startswith("| relu ")]
    assert next(row for row in whole if row[1] == "bad (5)")[2:6] == ["2/2", "2 diverged", outcomes, "diverged (2/2)"]
    for name in ("heatmap.png", "curves.png"):  # what they draw: tests/test_report.py
        assert (sweep_dir / name).read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
def test_summary_csv_has_one_row_per_cell_with_the_cells_numbers(jobs1):
    sweep_dir, _ = jobs1
    with open(sweep_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["cell"] for r in rows] == CELLS
    for row in rows:
        s = summary(sweep_dir / row["cell"])
        assert row["model.activation"] == s["activation"]
        assert row["init.scale"] == ("good" if "goodinit" in row["cell"] else "bad")
        assert float(row["init.scale_value"]) == s["init_scale"]
        assert int(row["seed"]) == s["seed"]
        for variant, v in s["variants"].items():
            assert row[f"{variant}/diverged"] == str(v["diverged"])
            for column, value in (
                ("final_val_accuracy", v["final_val_accuracy"]),
                ("test_accuracy", v["test_accuracy"]),
                ("single_sample_inference", v["single_sample"]["inference"]),
                ("single_sample_training", v["single_sample"]["training"]),
            ):
                assert row[f"{variant}/{column}"] == ("" if value is None else str(value))


@pytest.mark.slow
def test_report_md_has_a_row_per_grid_point(jobs1):
    sweep_dir, _ = jobs1
    text = (sweep_dir / "report.md").read_text()
    assert text.startswith("# Sweep `smoke_grid`")
    assert "8 of 8 cells finished" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "seeds" not in line]
    assert [tuple(c.strip() for c in r.split("|")[1:3]) for r in rows] == [
        ("relu", "good (0.05)"),
        ("relu", "bad (5)"),
        ("sigmoid", "good (0.05)"),
        ("sigmoid", "bad (5)"),
    ]
    assert "diverged" in text and "Missing" not in text


# --- --jobs 2, killed and resumed ----------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """The smoke sweep's seed-0 half with --jobs 2, killed (kill -9) once a cell is done, then run
    again with --jobs 2.

    Every cell is computed by a --jobs 2 worker, before or after the kill.
    """
    results = tmp_path_factory.mktemp("resumed")
    sweep_dir = results / "smoke_grid"
    with open(results / "killed.log", "w") as log:
        proc = bnlab(
            "sweep", SMOKE, "--seeds", "0", "--results", results, "--jobs", "2", background=True, stdout=log, stderr=log
        )
        deadline, workers = time.monotonic() + 180, set()
        while not complete_cells(sweep_dir) and proc.poll() is None and time.monotonic() < deadline:
            workers.update(_children(proc.pid))
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # a real kill -9, at an arbitrary moment of the next cells
        proc.wait()
    deadline = time.monotonic() + 10  # orphaned workers must exit, and soon
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphans = [pid for pid in workers if _alive(pid)]
    done_before = complete_cells(sweep_dir)
    stats = {
        (cell, name): (sweep_dir / cell / name).stat()
        for cell in done_before
        for name in ("summary.json", "metrics.csv")
    }
    done = sweep_smoke(results, "--seeds", "0", "--jobs", "2") if not orphans else None
    return dict(
        sweep_dir=sweep_dir,
        done_before=done_before,
        workers=workers,
        orphans=orphans,
        stats=stats,
        killed_log=(results / "killed.log").read_text(),
        done=done,
    )


@pytest.mark.slow
def test_killed_sweep_resumes_without_retraining_finished_cells(resumed):
    sweep_dir, done_before = resumed["sweep_dir"], resumed["done_before"]
    assert 1 <= len(done_before) < len(SEED0), resumed["killed_log"]
    assert resumed["workers"], "the sweep should have started worker processes"
    assert resumed["orphans"] == [], "worker processes outlived the killed sweep"

    done = resumed["done"]
    assert f"{len(done_before)} of 4 cells already complete: skipped" in done.stdout
    ran = [line.split()[1] for line in done.stdout.splitlines() if re.match(r"\[\d/4\] ", line)]
    assert sorted(ran) == sorted(set(SEED0) - done_before)
    for (cell, name), before in resumed["stats"].items():
        after = (sweep_dir / cell / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), f"{cell} was retrained"
    assert complete_cells(sweep_dir) == set(SEED0)
    leftovers = [p.name for p in sweep_dir.iterdir() if p.is_dir() and not (p / "summary.json").is_file()]
    assert leftovers == [], "a killed cell left a directory behind"


@pytest.mark.slow
def test_jobs_2_gives_the_same_numbers_as_jobs_1(jobs1, resumed):
    dir1, dir2 = jobs1[0], resumed["sweep_dir"]
    assert complete_cells(dir2) == set(SEED0)
    for cell in SEED0:
        assert (dir1 / cell / "metrics.csv").read_bytes() == (dir2 / cell / "metrics.csv").read_bytes(), cell
        s1, s2 = summary(dir1 / cell), summary(dir2 / cell)
        for variant in s1["variants"]:
            for key in (
                "final_val_accuracy",
                "late_val_accuracy",
                "test_accuracy",
                "predictions",
                "single_sample",
                "batch_size_curve",
                "diverged_at_step",
            ):
                assert s1["variants"][variant].get(key) == s2["variants"][variant].get(key), (cell, key)


@pytest.mark.slow
def test_a_long_sweep_replaces_its_worker_process_every_few_cells(jobs1):
    # TensorFlow's XLA cache grows with every cell a process runs; the executors bound it.
    from bn_lab.sweeps.cell import CELLS_PER_WORKER

    sweep_dir, _ = jobs1
    pids = [json.loads((sweep_dir / cell / "environment.json").read_text())["pid"] for cell in CELLS]
    cells_per_process = [pids.count(pid) for pid in dict.fromkeys(pids)]
    assert CELLS_PER_WORKER < len(CELLS)
    assert cells_per_process == [CELLS_PER_WORKER, len(CELLS) - CELLS_PER_WORKER]  # --jobs 1: one after the other


# --- signals, unwritable places, too many jobs ------------------------------------------------


def _workers(pid: int) -> set[int]:
    """The sweep's cell processes (spawned pool workers), not multiprocessing's resource tracker."""
    found = set()
    for child in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_more_jobs_than_cores_and_cells_then_sigterm(tmp_path):
    # 2 cells with --jobs 100: one warning, one worker per cell (never 100); then a SIGTERM
    # while both train stops the sweep and its workers like Ctrl-C.
    results = tmp_path / "results"
    proc = bnlab(
        "sweep",
        REPO / "configs" / "smoke.yaml",
        "--grid",
        "model.activation=relu,sigmoid",
        "--results",
        results,
        "--jobs",
        "100",
        "--set",
        "train.steps=100000",
        background=True,
    )
    deadline, workers = time.monotonic() + 120, set()
    while len(workers) < 2 and time.monotonic() < deadline:  # both workers started
        workers |= _workers(proc.pid)
        time.sleep(0.1)
    deadline = time.monotonic() + 8  # training, and time for a 3rd worker to show up if one were started
    while time.monotonic() < deadline:
        workers |= _workers(proc.pid)
        time.sleep(0.1)
    assert len(workers) == 2, workers
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143
    # No traceback, no leaked-semaphore or other warning from the worker processes.
    assert stderr == (
        f"warning: --jobs 100 is more than this machine's {os.cpu_count()} cores: cells will run slower, not faster "
        "(each trains on 2 threads)\n"
        "terminated (SIGTERM): nothing incomplete was left looking complete\n"
    )
    deadline = time.monotonic() + 20  # the workers end with their cells
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
    sweep_dir = results / "smoke_sweep"
    assert sorted(p.name for p in sweep_dir.iterdir()) == [".lock", "sweep.json"]


@pytest.mark.slow
def test_a_read_only_results_directory_is_one_line_for_sweep_and_report(read_only_dir, jobs1):
    done = bnlab("sweep", SMOKE, "--results", read_only_dir)
    assert (done.returncode, done.stderr) == (
        1,
        f"error: {read_only_dir / 'smoke_grid'}: cannot write (Read-only file system)\n",
    )
    # A finished sweep seen through a read-only mount: the report cannot be rewritten there.
    shutil.copytree(jobs1[0], read_only_dir.parent / "ro-source" / "smoke_grid")
    done = bnlab("report", read_only_dir / "smoke_grid")
    assert done.returncode == 1
    assert (
        done.stderr == f"error: {read_only_dir / 'smoke_grid' / 'summary.csv'}: cannot write (Read-only file system)\n"
    )


# --- a small sweep built from cells of the smoke sweep ------------------------------------------

MINI = """\
name: smoke_grid
base: {base}
set: {{train.steps: 60, train.eval_every: 20, optimizer.learning_rate: 2}}
grid:
  model.activation: [relu]
  init.scale: {{good: 0.05, bad: 5.0}}
seeds: [0]
"""


@pytest.fixture
def mini(jobs1, tmp_path):
    """The relu half of the smoke sweep with seed 0: the same cells, so they can be copied in."""
    path = tmp_path / "mini.yaml"
    path.write_text(MINI.format(base=REPO / "configs" / "smoke.yaml"))
    return path, tmp_path / "results", jobs1[0]


@pytest.mark.slow
def test_complete_cells_are_skipped_and_a_changed_config_needs_force(mini):
    path, results, smoke_dir = mini
    for cell in ("relu_goodinit_seed0", "relu_badinit_seed0"):
        shutil.copytree(smoke_dir / cell, results / "smoke_grid" / cell)
    done = bnlab("sweep", path, "--results", results)
    assert done.returncode == 0, done.stderr
    assert "[" not in done.stdout.split("sweep smoke_grid:")[0]  # no cell ran
    stamp = (results / "smoke_grid" / "relu_goodinit_seed0" / "summary.json").stat().st_mtime_ns

    changed = bnlab("sweep", path, "--results", results, "--set", "train.steps=40")
    assert changed.returncode == 2
    assert changed.stderr.count("\n") == 1 and "Traceback" not in changed.stderr
    assert "relu_goodinit_seed0" in changed.stderr and "train.steps: 60 -> 40" in changed.stderr
    assert "--force" in changed.stderr
    assert (results / "smoke_grid" / "relu_goodinit_seed0" / "summary.json").stat().st_mtime_ns == stamp

    forced = bnlab("sweep", path, "--results", results, "--set", "train.steps=40", "--force", timeout=300)
    assert forced.returncode == 0, forced.stderr
    for cell in ("relu_goodinit_seed0", "relu_badinit_seed0"):
        config = yaml.safe_load((results / "smoke_grid" / cell / "config.yaml").read_text())
        assert config["train"]["steps"] == 40
        rows = (results / "smoke_grid" / cell / "metrics.csv").read_text().splitlines()
        assert max(int(r.split(",")[1]) for r in rows[1:]) == 40


@pytest.mark.slow
def test_a_failed_cell_is_recorded_and_the_sweep_goes_on(mini):
    path, results, smoke_dir = mini
    sweep_dir = results / "smoke_grid"
    sweep_dir.mkdir(parents=True)
    # This sweep's manifest, as a sweep stopped before its cells writes it: the directory is the
    # sweep's, so a file where a run must go fails that cell (a directory of other files is refused whole).
    manifest = {**spec.load(path).manifest(), "command_line": "bnlab sweep mini.yaml"}
    (sweep_dir / "sweep.json").write_text(json.dumps(manifest))
    (sweep_dir / "relu_goodinit_seed0").write_text("in the way")
    done = bnlab("sweep", path, "--results", results, timeout=300)
    assert done.returncode == 1
    assert "relu_goodinit_seed0" in done.stderr and "1 of 2 cells did not complete" in done.stderr
    assert complete_cells(sweep_dir) == {"relu_badinit_seed0"}  # the sweep went on
    failures = json.loads((sweep_dir / "failed.json").read_text())
    assert list(failures) == ["relu_goodinit_seed0"]
    assert "RunDirError" in failures["relu_goodinit_seed0"]["error"]
    assert "not a directory" in failures["relu_goodinit_seed0"]["error"]
    report = (sweep_dir / "report.md").read_text()
    assert "Failed: 1 cell, errors with tracebacks in failed.json:\n- relu_goodinit_seed0: RunDirError" in report

    (sweep_dir / "relu_goodinit_seed0").unlink()  # the obstacle gone, the cell done (by the smoke sweep)
    shutil.copytree(smoke_dir / "relu_goodinit_seed0", sweep_dir / "relu_goodinit_seed0")
    again = bnlab("sweep", path, "--results", results, timeout=300)
    assert again.returncode == 0, again.stderr
    assert complete_cells(sweep_dir) == {"relu_goodinit_seed0", "relu_badinit_seed0"}
    assert not (sweep_dir / "failed.json").exists()
    assert "Failed" not in (sweep_dir / "report.md").read_text()


# --- dry runs and bad input (no TensorFlow) -----------------------------------------------------


@pytest.mark.slow
def test_dry_run_lists_cells_and_their_state_without_tensorflow(jobs1, tmp_path):
    listing = bnlab("sweep", SMOKE, "--results", jobs1[0].parent, "--dry-run")
    assert listing.returncode == 0, listing.stderr
    for cell in CELLS:
        line = next(line for line in listing.stdout.splitlines() if line.split()[0:1] == [cell])
        assert "[complete]" in line and "model.activation=" in line and "init.scale=" in line
    assert "8 complete" in listing.stdout

    code = (
        "import sys; from bn_lab.cli import main\n"
        f"try: main(['sweep', {str(SMOKE)!r}, '--results', {str(tmp_path)!r}, '--dry-run'])\n"
        "except SystemExit as e: assert e.code in (0, None), e.code\n"
        "assert 'tensorflow' not in sys.modules and 'ray' not in sys.modules and 'matplotlib' not in sys.modules\n"
    )
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.count("[to run]") == 8 and "8 to run" in fresh.stdout
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


@pytest.mark.slow
def test_ad_hoc_grid_names_cells_from_the_axes(tmp_path):
    listing = bnlab(
        "sweep",
        REPO / "configs" / "smoke.yaml",
        "--grid",
        "optimizer.learning_rate=0.1,2",
        "--grid",
        "init.scale=good:0.05,bad:5",
        "--grid",
        "train.steps=100",
        "--seeds",
        "0,3",
        "--results",
        tmp_path,
        "--dry-run",
    )
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines()[1:-1]]
    assert names == [
        f"lr{lr}_{init}init_steps100_seed{seed}" for lr in ("0.1", "2") for init in ("good", "bad") for seed in (0, 3)
    ]
    assert listing.stdout.startswith(f"sweep smoke_sweep: 8 cells (4 grid points x 2 seeds) in {tmp_path}/smoke_sweep/")
    assert "init.scale=bad (5)" in listing.stdout
    assert list(tmp_path.iterdir()) == []


def test_help_imports_neither_tensorflow_nor_ray():
    code = (
        "import sys; from bn_lab.cli import main\n"
        "for args in (['--help'], ['sweep', '--help'], ['report', '--help']):\n"
        "    try: main(args)\n"
        "    except SystemExit: pass\n"
        "assert not {'tensorflow', 'ray', 'matplotlib'} & set(sys.modules), sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--executor [local|inprocess|ray]" in done.stdout and "--dry-run" in done.stdout


BAD_SWEEPS = {
    # issue 8: names that would escape their parent, duplicate keys, unnameable values
    "value name ..": (
        "grid: {init.scale: {'..': 5.0}}",
        "grid: init.scale: value name '..' must not be '.' or '..' (it names a directory of its own)",
    ),
    "duplicate key": (
        "grid: {model.activation: [relu]}\nseeds: [0]\nseeds: [1]",
        "duplicate key 'seeds' at line 5; give each key once",
    ),
    "unknown key": (
        "grid: {model.activaton: [relu]}",
        "grid: unknown key 'model.activaton' (did you mean 'model.activation'?)",
    ),
    "bare leaf": ("grid: {activation: [relu]}", "grid: unknown key 'activation' (did you mean 'model.activation'?)"),
    "empty axis": ("grid: {model.activation: []}", "grid: model.activation: empty axis; give at least one value"),
    "negative lr": (
        "grid: {optimizer.learning_rate: [0.1, -1]}",
        "grid: optimizer.learning_rate must be > 0, got -1.0",
    ),
    "unknown activation": (
        "grid: {model.activation: [relu, swish]}",
        "grid: model.activation: unknown value 'swish'; allowed: relu, sigmoid, tanh, elu, linear",
    ),
    "not a list": (
        "grid: {model.activation: relu}",
        "grid: model.activation: must be a list of values or a mapping of names to values, got 'relu'",
    ),
    "seed axis": ("grid: {seed: [0, 1]}", "grid: seed cannot be a grid axis: list seeds under `seeds:` (or --seeds)"),
    "same value twice": (
        "grid: {optimizer.learning_rate: [0.1, 0.10]}",
        "grid: optimizer.learning_rate: value 0.1 is listed twice",
    ),
    "a value no name can hold": (
        "grid: {data.idx_dir: [/data/mnist, other]}",
        "grid: data.idx_dir: value /data/mnist cannot be part of a cell name; name the values, e.g. data.idx_dir: {a: ..., b: ...}",
    ),
    "bad seeds": (
        "grid: {model.activation: [relu]}\nseeds: [0, -1]",
        "seeds: must be a non-empty list of non-negative integers, got -1",
    ),
    "unknown sweep key": (
        "grid: {model.activation: [relu]}\nseed: [0]",
        "unknown key 'seed'; a sweep file has: name, base, set, grid, seeds",
    ),
    "bad set": (
        "set: {train.steps: 0}\ngrid: {model.activation: [relu]}",
        "set: train.steps must be in 1..10,000,000, got 0",
    ),
    "bad value for the base": (
        "grid: {train.batch_size: [60, 5000]}",
        "grid: train.batch_size 5000 is larger than the training set (2000 images)",
    ),
    "bad combination": (
        "grid: {train.batch_size: [60, 400], data.train_limit: [300, 2000]}",
        "cell batch_size400_train_limit300_seed0: train.batch_size 400 is larger than the training set (300 images)",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_SWEEPS)
def test_bad_sweep_files_are_one_line_errors_and_nothing_runs(case, tmp_path):
    body, message = BAD_SWEEPS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nbase: {REPO / 'configs' / 'smoke.yaml'}\n{body}\n")
    done = bnlab("sweep", path, "--results", tmp_path / "results")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == f"error: {path}: {message}\n"
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--grid", "model.activation"], "--grid model.activation: expected KEY=V1,V2,..."),
        (
            ["--grid", "model.activaton=relu"],
            "--grid: unknown key 'model.activaton' (did you mean 'model.activation'?)",
        ),
        (["--grid", "optimizer.learning_rate=0.1,-2"], "--grid: optimizer.learning_rate must be > 0, got -2.0"),
        (
            ["--grid", "model.activation=relu", "--seeds", "0,x"],
            "--seeds 0,x: expected comma-separated non-negative integers",
        ),
        (["--grid", "model.activation=relu", "--set", "seed=3"], "--set: seed cannot be set in a sweep"),
        ([], "is a run config, not a sweep file (it has no `grid:`); give axes with --grid KEY=V1,V2"),
        (["--grid", "model.activation=relu", "--executor", "ray", "--jobs", "2"], "--jobs is for the local executor"),
    ],
)
def test_bad_ad_hoc_grids_are_one_line_errors(args, message, tmp_path):
    done = bnlab("sweep", REPO / "configs" / "smoke.yaml", "--results", tmp_path / "results", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1 and message in done.stderr
    assert not (tmp_path / "results").exists()


def test_missing_ray_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None  # as if the extra were not installed\n"
        "from bn_lab.cli import main\n"
        f"main(['sweep', {str(SMOKE)!r}, '--results', {str(tmp_path)!r}, '--executor', 'ray'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == "error: the ray executor needs the optional extra: pip install 'bn_lab[ray]'\n"
    assert list(tmp_path.iterdir()) == []


def test_cell_names_never_lie_about_their_value(tmp_path):
    from bn_lab.sweeps import spec as sweeps

    found = sweeps.load(REPO / "configs" / "smoke.yaml", ["optimizer.learning_rate=1e6,1e-6,0.1234567,0.12345671,2"])
    # Before: :g rounding named 0.1234567 and 0.1234568 alike, and 1e+06 became "1e-06".
    assert [c.point for c in found.cells] == ["lr1e6", "lr1e-6", "lr0.1234567", "lr0.12345671", "lr2"]
    assert [c.config["optimizer"]["learning_rate"] for c in found.cells] == [1e6, 1e-6, 0.1234567, 0.12345671, 2.0]


@pytest.mark.slow
def test_a_base_that_is_a_directory_or_a_sweep_says_so(tmp_path):
    (tmp_path / "adir").mkdir()
    for base, message in (
        ("adir", "is a directory; it must be a run config (a YAML file)"),
        (str(SMOKE), "is a sweep file; the base must be a run config (no grid:, no base:)"),
    ):
        path = tmp_path / "s.yaml"
        path.write_text(f"base: {base}\ngrid: {{model.activation: [relu]}}\n")
        done = bnlab("sweep", path, "--results", tmp_path / "results")
        assert done.returncode == 2 and done.stderr.startswith(f"error: {path}: base: ") and message in done.stderr


@pytest.mark.slow
def test_an_escaping_sweep_name_is_refused(tmp_path):
    expected = {
        "..": "name must not be '.' or '..' (it names a directory of its own), got '..'",
        ".": "name must not be '.' or '..' (it names a directory of its own), got '.'",
        "a/b": "name may contain only letters, digits, '_', '.', '-', got 'a/b'",
    }
    path = tmp_path / "named.yaml"
    for name, message in expected.items():
        for args in ([SMOKE], [REPO / "configs" / "smoke.yaml", "--grid", "model.activation=relu"]):  # file, ad-hoc
            done = bnlab("sweep", *args, "--name", name, "--results", tmp_path / "results")
            assert (done.returncode, done.stderr) == (2, f"error: --{message}\n")
        path.write_text(
            f"name: {json.dumps(name)}\nbase: {REPO / 'configs' / 'smoke.yaml'}\ngrid: {{model.activation: [relu]}}\n"
        )
        done = bnlab("sweep", path, "--results", tmp_path / "results")
        assert (done.returncode, done.stderr) == (2, f"error: {path}: {message}\n")
    assert not (tmp_path / "results").exists()


def test_a_sweep_file_or_base_that_is_not_utf8_is_named(tmp_path):
    from bn_lab.sweeps import spec as sweeps

    (tmp_path / "base.yaml").write_bytes(b"description: caf\xe9\n")
    path = tmp_path / "s.yaml"
    path.write_text("base: base.yaml\ngrid: {model.activation: [relu]}\n")
    with pytest.raises(ConfigError) as caught:
        sweeps.load(path)
    assert str(caught.value) == f"{tmp_path / 'base.yaml'}: not UTF-8 text (byte 0xe9 at line 1); save it as UTF-8"
    path.write_bytes(b"name: caf\xe9\nbase: base.yaml\n")
    with pytest.raises(ConfigError) as caught:
        sweeps.load(path)
    assert str(caught.value) == f"{path}: not UTF-8 text (byte 0xe9 at line 1); save it as UTF-8"


def test_seeds_sections_and_long_names_are_one_line_errors():
    from bn_lab.sweeps import spec as sweeps

    def error(function, *args) -> str:
        with pytest.raises(ConfigError) as caught:
            function(*args)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    smoke = REPO / "configs" / "smoke.yaml"
    # A seed is part of every cell's directory name (seed<N>).
    assert error(sweeps.parse_seeds, "0,4294967296") == "--seeds: a seed must be at most 4,294,967,295, got 4294967296"
    # `--set model={name: convnet}` is its keys, but a grid axis is one key, not a section.
    assert error(sweeps.load, smoke, ["model={name: convnet}"]).startswith(
        "--grid: model is a section, a mapping of its keys (model.name, model.activation,"
    )
    # Each value's name fits, the cell's name (their sum) does not: a file name has 255 bytes.
    long = [
        "init.scale=" + ",".join(f"{c * 120}:0.0{i + 1}" for i, c in enumerate("ab")),
        "bn.epsilon=" + "e" * 80 + ":0.01",
    ]
    assert error(sweeps.load, smoke, long) == (
        f"--grid: cell name '{'a' * 58}… must be at most 200 characters long; name the values with short names, "
        "e.g. init.scale: {good: 0.05, bad: 5.0}"
    )
