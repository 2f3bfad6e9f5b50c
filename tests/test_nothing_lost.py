"""Nothing lost, round two: a directory bn_lab did not make is never touched, a damaged run never
stops a report, no input exhausts the machine. Real processes, acting while they train."""

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from bn_lab.config import footprint
from bn_lab.config import loading as config
from bn_lab.config.yaml_io import ConfigError, read_yaml, shown
from bn_lab.store import claims, rundir
from tests.conftest import CONFIGS, RUN_FILES, SWEEP_SMOKE, bnlab

SMOKE = CONFIGS / "smoke.yaml"
SHORT = ("--set", "train.steps=20", "--set", "train.eval_every=10")


def one_error_line(process, code: int = 2) -> str:
    assert process.returncode == code, (process.returncode, process.stderr)
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in process.stderr, process.stderr
    return lines[0]


def staging_of(out: Path, timeout: float = 120) -> Path:
    """Waits until a run's claim on `out` shows (its hidden staging directory beside it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in out.parent.glob(f".{out.name}.*-*") if p.is_dir()]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no claim on {out} within {timeout} s")


# --- 1. the destination at commit is what the claim saw -----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arrival", ["notes", "a finished run"])
def test_what_arrives_at_out_while_the_run_trains_is_never_deleted(tmp_path, arrival, smoke_sweep):
    out = tmp_path / "X"
    earlier = finished_run(tmp_path, smoke_sweep) if arrival == "a finished run" else None  # ready in time
    run = bnlab("run", SMOKE, "--set", "train.steps=400", "--out", out, "--quiet", background=True)
    staging_of(out)
    if arrival == "notes":
        out.mkdir()
        (out / "notes.txt").write_text("notes")
        expected = {"notes.txt": "notes"}
    else:  # another run, finished, copied there
        shutil.copytree(earlier, out)
        expected = {name: (out / name).read_text() for name in ("summary.json", "config.yaml")}
    _, stderr = run.communicate(timeout=300)
    kept = tmp_path / "X-2"
    run.stderr = stderr  # one_error_line reads returncode and stderr
    line = one_error_line(run)
    assert line.startswith(f"error: {out}: changed while this run trained (it now holds ")
    assert line.endswith(f"); nothing there was touched, and the finished run is at {kept}")
    assert {name: (out / name).read_text() for name in expected} == expected
    assert rundir.is_complete(kept)  # the run itself is not lost either
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def finished_run(tmp_path, smoke_sweep) -> Path:
    """A finished bn_lab run of its own: a copy of a cell of the session's smoke sweep (a run as
    `bnlab run` writes it)."""
    out = tmp_path / "a-finished-run"
    shutil.copytree(smoke_sweep[0] / "relu_goodinit_seed0", out)
    assert rundir.is_complete(out)
    return out


# --- 2. every kind of claim sees every other -------------------------------------------------


@pytest.mark.slow
def test_a_seeds_run_and_a_plain_run_never_share_a_directory(tmp_path):
    out = tmp_path / "X"
    plain = bnlab("run", SMOKE, "--set", "train.steps=400", "--out", out, "--quiet", background=True)
    staging_of(out)
    line = one_error_line(bnlab("run", SMOKE, *SHORT, "--seeds", "0", "--out", out))
    assert line.startswith(f"error: {out}: another bnlab run (pid {plain.pid}) is writing it")
    assert plain.wait(timeout=300) == 0
    assert {p.name for p in out.iterdir()} == RUN_FILES  # no .lock, sweep.json or seed directory of the refused one

    seeds = tmp_path / "S"
    sweep = bnlab("run", SMOKE, "--set", "train.steps=400", "--seeds", "0", "--out", seeds, "--quiet", background=True)
    staging_of(seeds)
    line = one_error_line(bnlab("run", SMOKE, *SHORT, "--out", seeds))
    assert line.startswith(f"error: {seeds}: another bnlab sweep (pid {sweep.pid}) is writing it")
    assert sweep.wait(timeout=300) == 0
    assert rundir.is_complete(seeds / "seed0")


# --- 3, 4. a sweep writes only its own directory, with its own grid ---------------------------------


@pytest.mark.slow
def test_a_sweep_never_writes_into_a_directory_of_other_files(tmp_path):
    mine = tmp_path / "d"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    line = one_error_line(bnlab("run", SMOKE, *SHORT, "--seeds", "0", "--out", mine))
    assert line == (
        f"error: {mine}: not a bn_lab sweep (no sweep.json; it holds report.md); use --out to write elsewhere"
    )
    results = tmp_path / "R"
    (results / "N").mkdir(parents=True)
    (results / "N" / "summary.csv").write_text("mine")
    line = one_error_line(bnlab("sweep", SWEEP_SMOKE, "--results", results, "--name", "N"))
    # Each command names its own options: `bnlab sweep` has no --out (issue 33).
    assert line.endswith(
        "R/N: not a bn_lab sweep (no sweep.json; it holds summary.csv); use --name or --results to write elsewhere"
    )
    assert (mine / "report.md").read_text() == "my notes" and sorted(p.name for p in mine.iterdir()) == ["report.md"]
    assert (results / "N" / "summary.csv").read_text() == "mine" and len(list((results / "N").iterdir())) == 1


@pytest.mark.slow
def test_a_changed_sweep_is_an_error_naming_what_changed_and_force_replaces_its_manifest(smoke_sweep, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(smoke_sweep[0], results / "smoke_grid")
    manifest = results / "smoke_grid" / "sweep.json"
    before = manifest.read_text()
    done = bnlab("sweep", SWEEP_SMOKE, "--results", results, "--seeds", "0")
    line = one_error_line(done)
    assert line.startswith(f"error: {manifest}: this sweep was started with another grid (seeds [0, 1] -> [0]; ")
    assert "cells only in it: relu_goodinit_seed1, relu_badinit_seed1, sigmoid_goodinit_seed1 and 1 more" in line
    assert "rerun it as it was started (" in line and "use --force to replace its manifest" in line
    assert manifest.read_text() == before
    # A --seeds run into a grid sweep is refused the same way; into a finished run, as a run.
    line = one_error_line(bnlab("run", SMOKE, "--seeds", "0", "--out", results / "smoke_grid"))
    assert "this sweep was started with another grid" in line and manifest.read_text() == before
    cell = results / "smoke_grid" / "relu_goodinit_seed0"
    line = one_error_line(bnlab("run", SMOKE, "--seeds", "0", "--out", cell))
    assert line == f"error: {cell}: holds a run, not a sweep; use --out to write elsewhere"  # run --seeds has no --name
    assert not (cell / "sweep.json").exists()
    # The same sweep again resumes (nothing to run); --force replaces the manifest, and only it.
    assert bnlab("sweep", SWEEP_SMOKE, "--results", results, "--quiet").returncode == 0
    forced = bnlab("sweep", SWEEP_SMOKE, "--results", results, "--seeds", "0", "--force", "--quiet")
    assert forced.returncode == 0, forced.stderr
    assert [c["seed"] for c in json.loads(manifest.read_text())["cells"]] == [0, 0, 0, 0]
    assert rundir.is_complete(results / "smoke_grid" / "relu_goodinit_seed1")  # still there, untouched


@pytest.mark.slow
def test_a_sweep_never_writes_into_hidden_files_nor_over_a_users_latest(tmp_path):
    dots = tmp_path / "dots"
    (dots / ".git").mkdir(parents=True)
    (dots / ".env").write_text("SECRET=1")
    line = one_error_line(bnlab("run", SMOKE, *SHORT, "--seeds", "0", "--out", dots))
    assert line.endswith(
        f"{dots}: not a bn_lab sweep (no sweep.json; it holds .env, .git); use --out to write elsewhere"
    )
    run = tmp_path / "exp" / "20261202-101010-seed0"
    run.mkdir(parents=True)
    latest = tmp_path / "exp" / "latest"
    latest.write_text("my notes\n")
    rundir.point_latest(run)
    assert latest.read_text() == "my notes\n"  # not bn_lab's pointer: never touched
    for earlier in ("20261201-000000-seed0", "20261201-000000-seeds0_3_7", "20261201-000000-seeds0-2"):
        latest.write_text(earlier + "\n")  # bn_lab's pointer, to a run or a --seeds directory
        rundir.point_latest(run)
        assert latest.read_text() == "20261202-101010-seed0\n", earlier


@pytest.mark.slow
def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path):
    long = tmp_path / ("a" * 300)
    for seeds in ((), ("--seeds", "0")):
        line = one_error_line(bnlab("run", SMOKE, *SHORT, *seeds, "--out", long))
        assert line.endswith(": a name in it is 300 bytes; at most 231"), line
    assert list(tmp_path.iterdir()) == []


# --- 5. --force recognises a run by what bn_lab wrote, not by file names ----------------------------


@pytest.mark.slow
def test_force_never_replaces_a_lookalike_of_a_run(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("database: prod\n")
    (mine / "summary.json").write_text('{"rows": 12}')
    line = one_error_line(bnlab("run", SMOKE, *SHORT, "--out", mine, "--force"))
    assert line == (
        f"error: {mine}: --force replaces only a bn_lab run, and it is not a bn_lab run "
        "(no environment.json that bn_lab wrote)"
    )
    assert (mine / "config.yaml").read_text() == "database: prod\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


@pytest.mark.slow
def test_force_looks_inside_a_run_and_at_commit_sees_a_file_added_deep_inside(tmp_path, smoke_sweep):
    run = finished_run(tmp_path, smoke_sweep)
    notes = run / "tensorboard" / "with_bn" / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(rundir.RunDirError) as refused:
        claims.claim(run, force=True)
    assert str(refused.value) == (
        f"{run}: --force replaces only a bn_lab run, and it holds tensorboard/with_bn/notes.txt, which no bn_lab run writes"
    )
    notes.unlink()
    claim = claims.claim(run, force=True)  # a bn_lab run: --force may replace it...
    (claim.staging / "summary.json").write_text("{}")
    notes.write_text("mine")  # ...but not after a file was put deep inside it meanwhile
    with pytest.raises(rundir.RunDirError, match="changed while this run trained"):
        claim.commit()
    assert notes.read_text() == "mine"


@pytest.mark.slow
def test_a_run_that_arrives_the_moment_the_claim_shows_is_never_replaced(tmp_path, smoke_sweep, monkeypatch):
    """The race a loaded machine once hit: a finished run copied to --out right after the staging
    directory showed, before the claim had looked at --out again. The claim's picture of --out is
    the one its checks approved (nothing there), so the commit sees the arrival and keeps both."""
    earlier, out = finished_run(tmp_path, smoke_sweep), tmp_path / "X"
    make_staging = claims.make_staging

    def staging_then_arrival(path, place):
        made = make_staging(path, place)
        shutil.copytree(earlier, out)  # the claim shows; the copy lands before anything else runs
        return made

    monkeypatch.setattr(claims, "make_staging", staging_then_arrival)
    claim = claims.claim(out)
    monkeypatch.undo()
    expected = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    (claim.staging / "summary.json").write_text("{}")
    with pytest.raises(
        rundir.RunDirError, match=rf"^{re.escape(str(out))}: changed while this run trained \(it now holds "
    ):
        claim.commit()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == expected
    assert (tmp_path / "X-2" / "summary.json").read_text() == "{}"


@pytest.mark.slow
def test_an_empty_directory_made_between_the_commits_check_and_its_rename_is_kept(tmp_path, monkeypatch):
    """A rename over an empty directory succeeds on POSIX: one created after the commit looked would
    have been replaced, and whatever its maker wrote next would land in the run. The commit never
    renames over anything; the run goes beside it."""
    out = tmp_path / "X"
    claim = claims.claim(out)
    (claim.staging / "summary.json").write_text("{}")
    fingerprint = claims.fingerprint

    def looked_then_made(path):
        found = fingerprint(path)
        if path == out:
            out.mkdir()
        return found

    monkeypatch.setattr(claims, "fingerprint", looked_then_made)
    with pytest.raises(rundir.RunDirError, match=r"changed while this run trained \(it was created meanwhile\)"):
        claim.commit()
    assert list(out.iterdir()) == [] and (tmp_path / "X-2" / "summary.json").read_text() == "{}"


# --- 6. a damaged cell is reported as damaged, rerun on resume, and the report goes on -----------------

DAMAGE = {
    "relu_goodinit_seed0": ("summary.json", lambda p: p.write_text(p.read_text()[:40])),  # truncated
    "relu_goodinit_seed1": ("summary.json", lambda p: p.write_text("")),
    "relu_badinit_seed0": ("summary.json", lambda p: p.write_text("[1, 2]")),
    "relu_badinit_seed1": (
        "summary.json",
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "variants": {}})),
    ),
    "sigmoid_goodinit_seed0": ("summary.json", lambda p: p.write_bytes(b"\xff\xfe" + p.read_bytes())),
    "sigmoid_goodinit_seed1": ("metrics.csv", lambda p: p.write_text(p.read_text().replace("0.", "zero.", 3))),
    "sigmoid_badinit_seed0": ("metrics.csv", lambda p: p.unlink() or p.mkdir()),  # a directory
    "sigmoid_badinit_seed1": ("metrics.csv", lambda p: p.write_bytes(bytes(range(256)))),
}


@pytest.mark.slow
def test_damaged_cells_are_named_in_the_report_and_rerun_on_resume(smoke_sweep, tmp_path):
    results = tmp_path / "results"
    sweep_dir = results / "smoke_grid"
    shutil.copytree(smoke_sweep[0], sweep_dir)
    for cell, (name, damage) in DAMAGE.items():
        damage(sweep_dir / cell / name)
    (sweep_dir / "failed.json").write_text("[1, 2]")

    report = bnlab("report", sweep_dir)
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    report_md = (sweep_dir / "report.md").read_text()
    assert "0 of 8 cells finished" in report_md
    assert "Damaged: 8 cells left out, whose files do not read back (resuming the sweep reruns them):" in report_md
    for cell, (name, _) in DAMAGE.items():
        assert f"- {cell}: {name} is damaged (" in report_md, cell
    dry = bnlab("sweep", SWEEP_SMOKE, "--results", results, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.strip().endswith("8 damaged"), dry.stdout

    # Resuming reruns only the damaged cells: make all but two of them whole again first.
    rerun = ("relu_goodinit_seed0", "sigmoid_badinit_seed1")
    for cell in DAMAGE:
        if cell not in rerun:
            shutil.rmtree(sweep_dir / cell)
            shutil.copytree(smoke_sweep[0] / cell, sweep_dir / cell)
    resumed = bnlab("sweep", SWEEP_SMOKE, "--results", results, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "6 of 8 cells already complete: skipped" in resumed.stdout
    assert sorted(re.findall(r"^\[\d/8\] (\S+)", resumed.stdout, re.M)) == sorted(rerun), resumed.stdout
    assert all(rundir.is_complete(sweep_dir / cell) for cell in DAMAGE)
    assert "8 of 8 cells finished" in (sweep_dir / "report.md").read_text()
    assert not (sweep_dir / "failed.json").exists()


SUMMARY_DAMAGE = {  # what the report reads, each made unreadable: the key the problem names
    "test_accuracy": lambda s: s["variants"]["with_bn"].pop("test_accuracy"),
    "wall_seconds": lambda s: s.pop("wall_seconds"),
    "with_bn.outcome": lambda s: s["variants"]["with_bn"].update(outcome="bogus"),
    "late_val_accuracy": lambda s: s["variants"]["without_bn"].update(late_val_accuracy=5),
    "precise_bn": lambda s: s["variants"]["with_bn"].update(precise_bn=[1]),
    "final_val_accuracy": lambda s: s["variants"]["with_bn"].update(final_val_accuracy="x"),
    "init_scale": lambda s: s.update(init_scale="big"),
}


@pytest.mark.slow
def test_a_summary_whose_values_the_report_cannot_read_is_damaged(smoke_sweep, tmp_path):
    cell = tmp_path / "cell"
    shutil.copytree(smoke_sweep[0] / "relu_goodinit_seed0", cell)
    original = json.loads((cell / "summary.json").read_text())
    assert rundir.run_problem(cell) is None
    for key, damage in SUMMARY_DAMAGE.items():
        damaged = json.loads(json.dumps(original))
        damage(damaged)
        (cell / "summary.json").write_text(json.dumps(damaged))
        problem = rundir.run_problem(cell)
        assert problem is not None and problem.startswith("summary.json is damaged (") and key in problem, key
    rows = (cell / "metrics.csv").read_text().splitlines()
    (cell / "summary.json").write_text(json.dumps(original))
    (cell / "metrics.csv").write_text("\n".join([rows[0], rows[1].replace(rows[1].split(",")[4], "", 1)]) + "\n")
    assert rundir.run_problem(cell).startswith("metrics.csv is damaged (")  # an empty accuracy is no number


def test_json_nested_too_deep_is_damage_not_a_crash(tmp_path):
    from bn_lab.config.yaml_io import SweepError
    from bn_lab.disk import files
    from bn_lab.store import sweep_manifest

    deep = "[" * 100_000
    for name in ("summary.json", "environment.json", "sweep.json", "failed.json"):
        (tmp_path / name).write_text(deep)
    with pytest.raises(ValueError, match="nested too deep"):
        files.read_json(tmp_path / "failed.json")
    assert rundir.run_problem(tmp_path) == "summary.json is damaged ('nested too deep')"
    assert not rundir.written_by_bn_lab(tmp_path)
    with pytest.raises(SweepError, match=r"sweep.json: unreadable \(nested too deep\)"):
        sweep_manifest.load_manifest(tmp_path)
    (tmp_path / "environment.json").unlink()
    os.mkfifo(tmp_path / "environment.json")  # would block a plain read for ever
    assert not rundir.written_by_bn_lab(tmp_path)
    (tmp_path / "failed.json").unlink()
    (tmp_path / "failed.json").symlink_to("/dev/zero")  # would fill memory
    with pytest.raises(ValueError, match="not a regular file"):
        files.read_json(tmp_path / "failed.json")


@pytest.mark.slow
def test_a_cells_config_is_read_as_every_config_is(smoke_sweep, tmp_path):
    """A finished cell's config.yaml with an alias bomb, a date or keys JSON cannot sort: the
    cell's config is unreadable (a changed cell), said at once, never expanded or a traceback."""
    results = tmp_path / "results"
    shutil.copytree(smoke_sweep[0], results / "smoke_grid")
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)
    ]
    bad = {"relu_goodinit_seed0": "\n".join(levels), "relu_goodinit_seed1": "a: 2024-01-01\n1: b\n"}
    for cell, text in bad.items():
        (results / "smoke_grid" / cell / "config.yaml").write_text(text)
    dry = bnlab("sweep", SWEEP_SMOKE, "--results", results, "--dry-run", timeout=60)
    assert dry.returncode == 0 and "Traceback" not in dry.stderr, dry.stderr
    for cell in bad:
        line = next(x for x in dry.stdout.splitlines() if x.split()[:1] == [cell])
        assert line.endswith("[changed config: its config.yaml is missing or unreadable]"), line


# --- 7, 8. no input exhausts the machine ---------------------------------------------------------


@pytest.mark.slow
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nexperiment: bomb\n")
    line = one_error_line(bnlab("run", bomb))
    assert (
        line
        == f"error: {bomb}: not valid YAML at line 6 (more than 100,000 values (aliases written out); not a config)"
    )
    # Aliases and merge keys within the bound are YAML, and work (issue 33).
    merged = tmp_path / "merged.yaml"
    merged.write_text(
        "arms:\n"
        "  - &bn {name: bn, normalizer: batch_norm, options: {momentum: 0.9}, label: BN}\n"
        "  - {<<: *bn, name: bn_fast, options: {momentum: 0.5}, label: BN fast}\n"
        "  - *bn\n"
    )
    with pytest.raises(config.ConfigError, match=r"arms\[2\] \(bn\): two arms are named 'bn'"):
        config.load(merged)
    merged.write_text(merged.read_text().replace("  - *bn\n", ""))
    arms = config.load(merged)["arms"]
    assert [(a["name"], a["normalizer"], a["options"]["momentum"], a["label"]) for a in arms] == [
        ("bn", "batch_norm", 0.9, "BN"),
        ("bn_fast", "batch_norm", 0.5, "BN fast"),  # the merged key gave way to the one written
    ]
    loop = tmp_path / "loop.yaml"
    loop.write_text("arms: &a [*a]\n")
    assert one_error_line(bnlab("run", loop)) == (
        f"error: {loop}: not valid YAML at line 1 (the alias *a is inside its own anchor; write the value out)"
    )
    assert one_error_line(bnlab("run", "/dev/zero")) == "error: /dev/zero: not a regular file; give a YAML file"
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 2**20 + "\n")
    assert one_error_line(bnlab("run", big)) == f"error: {big}: larger than 1 MB; not a config"
    huge = tmp_path / "huge.yaml"
    huge.write_text("experiment: huge\nmodel:\n  hidden_units: [" + ", ".join(["1"] * 100_001) + "]\n")
    with pytest.raises(ConfigError, match=r"more than 100,000 values \(aliases written out\); not a config"):
        read_yaml(huge)
    assert shown(list(range(10**6))) == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]"


@pytest.mark.slow
def test_a_grid_of_too_many_cells_is_refused_before_any_is_built(tmp_path):
    axes = ("optimizer.learning_rate", "init.scale", "train.steps")
    grid = [a for key in axes for a in ("--grid", f"{key}=" + ",".join(str(v) for v in range(1, 23)))]
    line = one_error_line(bnlab("sweep", SMOKE, *grid, "--results", tmp_path / "r", "--dry-run"))
    assert line == (
        "error: --grid: 22 (optimizer.learning_rate) x 22 (init.scale) x 22 (train.steps) x 1 seeds is "
        "10,648 cells, more than 10,000; sweep fewer values"
    )
    assert not (tmp_path / "r").exists()


def test_a_run_that_cannot_fit_in_memory_is_refused_before_anything_starts(tmp_path, monkeypatch):
    huge = config.validate({"model": {"hidden_units": [4096] * 64}, "optimizer": {"name": "adam"}})
    # The estimate: 13 float32 copies of every parameter with Adam, above what was measured (0.75 GB a layer of 4,096²).
    needed = footprint.estimate_bytes(huge)
    assert needed > 13 * 4 * footprint.parameters(huge) > 64 * 0.75e9
    monkeypatch.setattr(footprint, "machine_bytes", lambda: 24 * 2**30)
    with pytest.raises(ConfigError) as refused:
        footprint.check(huge)
    assert str(refused.value).startswith(
        f"config: model.hidden_units, optimizer.name: this run needs about {needed / 2**30:.1f} GiB of memory "
        "(2 networks of 1,061,003,294 parameters with adam), more than this machine's 24.0 GiB"
    )
    footprint.check(config.load(CONFIGS / "relu_lr2_badinit.yaml"))  # the lesson fits easily
    footprint.check(config.load(CONFIGS / "convnet_keras.yaml"))


@pytest.mark.slow
def test_the_cli_refuses_a_run_too_large_for_this_machine(tmp_path):
    huge = {"model.hidden_units": [4096] * 64, "optimizer.name": "adam"}
    if footprint.estimate_bytes(config.validate(config.unflatten(huge))) <= footprint.SHARE * footprint.machine_bytes():
        pytest.skip("this machine has the memory for the largest run bn_lab accepts")
    out = tmp_path / "huge"
    line = one_error_line(
        bnlab(
            "run",
            SMOKE,
            "--set",
            "model.hidden_units=[" + ",".join(["4096"] * 64) + "]",
            "--set",
            "optimizer.name=adam",
            "--out",
            out,
        )
    )
    assert line.startswith(f"error: {SMOKE} (with --set): model.hidden_units, optimizer.name: this run needs about ")
    assert line.endswith("; use fewer or narrower layers")
    assert list(tmp_path.iterdir()) == []  # no staging directory, nothing


# --- 10-12. everything checked before anything trains; the record says what was used -----------------


@pytest.mark.slow
def test_missing_data_is_refused_before_tensorflow_starts(tmp_path):
    none = tmp_path / "none"
    for command in (
        ("run", SMOKE),
        ("sweep", SMOKE, "--grid", "model.activation=relu,sigmoid", "--results", tmp_path / "r"),
    ):
        line = one_error_line(bnlab(*command, "--set", "data.source=idx", "--set", f"data.idx_dir={none}"))
        assert line == f"error: data.idx_dir: {none}: no such folder"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_bad_report_option_is_refused_before_any_cell_trains(tmp_path):
    for value in ("nan", "inf", "0"):
        line = one_error_line(bnlab("sweep", SWEEP_SMOKE, "--results", tmp_path / "r", "--threshold", value))
        assert "--threshold" in line
    assert not (tmp_path / "r").exists()
    from bn_lab.report import sweep_results

    sweep_results.check_options(np.float32(0.9), "late")  # numpy's numbers, as the Python API gets them
    sweep_results.check_options(np.int64(1), "late")


@pytest.mark.slow
def test_the_api_takes_numpy_numbers_and_refuses_what_it_cannot_use(tmp_path):
    from bn_lab import api

    resolved = api.resolve_config(
        SMOKE,
        seed=np.int64(1),
        overrides={
            "train.steps": np.int64(20),
            "optimizer.learning_rate": np.float32(0.5),
            "model.hidden_units": [np.int32(8), 8],
            "train.jit_compile": np.bool_(False),
        },
    )
    assert (resolved["seed"], resolved["train"]["steps"], resolved["optimizer"]["learning_rate"]) == (1, 20, 0.5)
    assert type(resolved["train"]["steps"]) is int and type(resolved["optimizer"]["learning_rate"]) is float
    assert resolved["model"]["hidden_units"] == [8, 8] and resolved["train"]["jit_compile"] is False

    lookalike = tmp_path / "lookalike"
    lookalike.mkdir()
    (lookalike / "summary.json").write_text("{}")
    with pytest.raises(rundir.RunDirError, match=r"lookalike: not a finished bn_lab run \(summary.json is damaged"):
        api.load(lookalike)
    with pytest.raises(
        ConfigError, match=r"config must be a YAML file's path or a mapping of keys to values, got list \[1, 2\]"
    ):
        api.run([1, 2])
    with pytest.raises(ConfigError, match="progress 'bogus': unknown; allowed: auto, bar, lines, none"):
        api.run(SMOKE, progress="bogus", out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_the_config_records_the_images_a_run_uses():
    small = {"data": {"train_limit": 2000, "val_limit": 500}}
    resolved = config.validate(small)  # defaults larger than the data: cut to what it holds, in whole batches
    assert (resolved["precise_bn"]["images"], resolved["diagnostics"]["probe_images"]) == (1980, 500)
    assert config.validate(resolved) == resolved  # config.yaml reads back the same
    asked = config.validate({**small, "precise_bn": {"images": 55000}, "diagnostics": {"probe_images": 5000}})
    assert (asked["precise_bn"]["images"], asked["diagnostics"]["probe_images"]) == (1980, 500)
    swept = config.validate(config.apply_overrides(config.validate({}), {"data.train_limit": 1000}))
    assert swept["precise_bn"]["images"] == 960  # a smaller limit over a resolved config: cut again, not refused
    with pytest.raises(
        ConfigError, match=r"init.scale must be in \(0, 1000\] \(the lesson's bad init is 5\), got 1e\+300"
    ):
        config.validate({"init": {"scale": 1e300}})
