"""The configs ship inside the package: `bnlab configs` lists them, `bnlab run NAME` and `bnlab
sweep NAME` find them from any directory, `--print-config` prints the resolved config, `bnlab
show` reprints a finished run's or sweep's table; the wheel holds every config, and a bundled
config trains from the installed wheel, outside the clone."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from bn_lab.config import bundled
from bn_lab.config import loading as config
from tests.conftest import CONFIGS, ROOT, bnlab


def test_the_clones_configs_are_the_bundled_ones():
    assert (ROOT / "configs").resolve() == bundled.DIRECTORY
    assert bundled.names() == sorted(p.stem for p in CONFIGS.glob("*.yaml")) and "smoke" in bundled.names()


def test_bnlab_configs_lists_every_bundled_file_in_its_group_with_its_description(tmp_path):
    process = bnlab("configs", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    lines = process.stdout.splitlines()
    headings = [line for line in lines if line and not line.startswith(" ")][:4]
    assert headings == [f"{title}:" for title, _ in bundled.GROUPS]
    listed = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert sorted(listed) == bundled.names()
    assert "tiny MLP run on a data subset" in listed["smoke"]
    assert all(len(line) <= 100 for line in lines)
    sweeps = lines.index(f"{bundled.GROUPS[3][0]}:")  # the last group: every sweep file, nothing else
    in_sweeps = [line.split()[0] for line in lines[sweeps + 1 :] if line.startswith("  ")]
    assert in_sweeps == [n for n in bundled.names() if n.startswith("sweep_")]


def test_bnlab_configs_name_prints_the_file_and_an_unknown_name_is_one_line_with_close_ones(tmp_path):
    process = bnlab("configs", "smoke", cwd=tmp_path)
    assert process.returncode == 0 and process.stdout == (CONFIGS / "smoke.yaml").read_text()
    for command in (["configs", "smok"], ["run", "smok"], ["sweep", "sweep_smok"]):
        process = bnlab(*command, cwd=tmp_path)
        assert process.returncode == 2 and process.stdout == ""
        assert process.stderr.count("\n") == 1 and "Traceback" not in process.stderr, process.stderr
        assert "no such file, nor a bundled config of that name; close: " in process.stderr
    assert "close: smoke, sweep_smoke" in bnlab("run", "smok", cwd=tmp_path).stderr


def test_print_config_prints_the_resolved_config_with_the_sets_and_trains_nothing(tmp_path):
    process = bnlab("run", "smoke", "--print-config", "--set", "seed=3", "--set", "train.steps=7", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    printed = yaml.safe_load(process.stdout)
    assert printed == config.load(CONFIGS / "smoke.yaml", {"seed": 3, "train.steps": 7})
    assert printed["bn"]["momentum"] == 0.99  # every default is there
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_bundled_sweep_runs_by_name_and_its_base_resolves_among_the_bundled_files(tmp_path):
    process = bnlab("sweep", "sweep_smoke", "--dry-run", "--seeds", "0", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert "_seed0" in process.stdout and "_seed1" not in process.stdout
    mine = tmp_path / "mine.yaml"  # a user's own sweep file over a bundled base, by its file name
    mine.write_text("name: mine\nbase: smoke.yaml\ngrid: {model.activation: [relu, sigmoid]}\nseeds: [0]\n")
    process = bnlab("sweep", mine, "--dry-run", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert "model.activation=sigmoid" in process.stdout
    process = bnlab("sweep", "smoke", "--grid", "model.activation=relu,sigmoid", "--dry-run", cwd=tmp_path)
    assert process.returncode == 0, process.stderr  # with --grid, a bundled base config by its name
    assert "sweep smoke_sweep: 2 cells (2 grid points x 1 seed)" in process.stdout


@pytest.mark.slow
def test_bnlab_show_prints_what_run_and_sweep_printed(smoke_sweep, tmp_path):
    sweep_dir, done = smoke_sweep
    shown = bnlab("show", sweep_dir, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    # The sweep printed its table, then where its report went: show prints the table alone.
    assert shown.stdout.startswith("sweep smoke_grid: 8 of 8 cells finished\n| ")
    assert shown.stdout + "report: " in done.stdout
    from bn_lab.report import printed
    from bn_lab.store import rundir

    cell = next(p for p in sorted(sweep_dir.iterdir()) if (p / "summary.json").is_file())
    before = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*")}
    process = bnlab("show", cell, cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    assert process.stdout == printed.report_text(rundir.load_summary(cell), cell) + "\n"
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*")} == before  # nothing rewritten
    process = bnlab("show", tmp_path, cwd=tmp_path)
    assert process.returncode == 2 and process.stderr == (
        f"error: {tmp_path}: not a finished run (no summary.json), nor a sweep directory (no sweep.json)\n"
    )


@pytest.mark.slow
def test_the_wheel_holds_every_config_and_a_bundled_config_trains_from_it_outside_the_clone(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            tmp_path / "dist",
            ROOT,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("bn_lab-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = sorted(
            n.removeprefix("bn_lab/configs/").removesuffix(".yaml")
            for n in z.namelist()
            if n.startswith("bn_lab/configs/")
        )
    assert shipped == bundled.names()
    # A fresh virtual environment outside the clone, the wheel installed into it by pip (this
    # environment's, told to install for the fresh one's Python: a pip of its own would cost the
    # test its longest step); TensorFlow and the other dependencies are this environment's (a path
    # in a .pth file: their download is not what is tested), never the clone's bn_lab.
    fresh = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", fresh], check=True, timeout=300)
    python = fresh / "bin" / "python"
    (site,) = (fresh / "lib").glob("python3*/site-packages")
    dependencies = [p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir()]
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in dependencies))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed = subprocess.run(  # --ignore-installed: the bn_lab of the dependencies' path is not this one
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--ignore-installed"]
        + ["-q", wheel],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [python, "-c", "import bn_lab; print(bn_lab.__file__)"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert where.stdout.startswith(str(site)), where  # the wheel's bn_lab, not the clone's
    listed = subprocess.run(
        [fresh / "bin" / "bnlab", "configs"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "  smoke " in listed.stdout, listed.stderr
    run = subprocess.run(
        [
            fresh / "bin" / "bnlab",
            "run",
            "smoke",
            "--set",
            "train.steps=5",
            "--set",
            "train.eval_every=5",
            "--out",
            "run",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (elsewhere / "run" / "summary.json").is_file()
    assert "tensorboard --logdir run" in run.stdout.rstrip().splitlines()[-1], run.stdout
