"""Nothing lost, round three (issue 33): what is on disk never hangs or crashes a reader, what is
printed never costs a run, a signal is never swallowed, and a message names only its caller's
options. Real files, FIFOs, symbolic links, processes and signals."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import bn_lab
from bn_lab import runtime
from bn_lab.config import loading as config
from bn_lab.report import sweep_report as report
from bn_lab.report import sweep_results, sweep_table
from bn_lab.store import callers, claims, rundir
from bn_lab.sweeps import seeds as several_seeds
from bn_lab.sweeps import spec
from tests.conftest import CONFIGS, SWEEP_SMOKE, bnlab, tiny_mlp_config
from tests.test_nothing_lost import one_error_line

SMOKE = CONFIGS / "smoke.yaml"
SHORT = ("--set", "train.steps=20", "--set", "train.eval_every=10")
CELL = "relu_goodinit_seed0"


# --- a file in its place that is no regular file, or none at all ------------------------------------


@pytest.mark.slow
def test_a_fifo_in_place_of_a_cells_files_never_blocks_a_reader(smoke_sweep, tmp_path):
    sweep = tmp_path / "smoke_grid"
    shutil.copytree(smoke_sweep[0], sweep)
    (sweep / CELL / rundir.METRICS).unlink()
    os.mkfifo(sweep / CELL / rundir.METRICS)  # a reader that opens it for reading would wait forever
    done = bnlab("report", sweep, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"- {CELL}: metrics.csv is damaged ('not a regular file')" in done.stdout
    dry = bnlab("sweep", SWEEP_SMOKE, "--results", tmp_path, "--dry-run", timeout=60)
    line = next(x for x in dry.stdout.splitlines() if x.split()[:1] == [CELL])
    assert line.endswith("[damaged: metrics.csv is damaged ('not a regular file')]")
    with pytest.raises(rundir.RunDirError, match="not a finished bn_lab run .metrics.csv is damaged"):
        bn_lab.load(sweep / CELL)
    other = sweep / "relu_badinit_seed0"
    (other / rundir.CONFIG).unlink()
    os.mkfifo(other / rundir.CONFIG)
    with pytest.raises(config.ConfigError, match="config.yaml: not a regular file; give a YAML file"):
        assert bn_lab.load(other).config
    third = sweep / "sigmoid_goodinit_seed0"
    (third / rundir.WEIGHTS).unlink()
    os.mkfifo(third / rundir.WEIGHTS)
    with pytest.raises(ValueError) as error:
        bn_lab.load(third).weights()
    assert str(error.value) == f"{third / rundir.WEIGHTS}: not a regular file"


@pytest.mark.slow
def test_a_cell_deleted_while_the_report_reads_it_is_left_out_not_a_traceback(smoke_sweep, tmp_path):
    """What the report uses is what it checked: each file is read once, so a cell deleted after
    that changes nothing, and one deleted before is named (it was FileNotFoundError)."""
    from bn_lab.report import sweep_figures as report_figures

    sweep = tmp_path / "smoke_grid"
    shutil.copytree(smoke_sweep[0], sweep)
    results = sweep_results.collect(sweep)
    shutil.rmtree(sweep / CELL)  # between the reading and the drawing
    assert report_figures.curves(results, sweep / rundir.CURVES)
    assert sweep_table.summary_rows(results)[0]["cell"] == CELL
    assert rundir.read_finished(sweep / CELL) == rundir.NOT_FINISHED
    text = report.write_report(sweep)
    assert f"Missing: 1 cell not run or not finished: {CELL}" in text


# --- what is printed never costs the run ----------------------------------------------------------


@pytest.mark.slow
def test_every_printed_character_survives_the_terminals_encoding(tmp_path):
    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}  # no ≈, —, ± in latin-1
    done = bnlab("run", SMOKE, *SHORT, "--out", tmp_path / "run", env=env)  # it was UnicodeEncodeError at the end
    assert done.returncode == 0, done.stderr
    assert "training mode \\u2248 inference from batch" in done.stdout
    assert rundir.is_complete(tmp_path / "run")


@pytest.mark.slow
def test_a_standard_output_that_takes_nothing_costs_nothing_but_its_line(smoke_sweep, tmp_path):
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "bn_lab.cli", "report", str(smoke_sweep[0])],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert done.returncode == 1
    assert done.stderr == "error: standard output: cannot write (No space left on device)\n"
    out = tmp_path / "run"
    with open("/dev/full", "w") as full:  # progress lines too: the run trains on, and is kept
        done = subprocess.run(
            [sys.executable, "-m", "bn_lab.cli", "run", str(SMOKE), *SHORT, "--out", str(out)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert done.returncode == 1 and done.stderr.endswith(
        "error: standard output: cannot write (No space left on device)\n"
    )
    assert rundir.is_complete(out)


@pytest.mark.slow
def test_a_closed_pipe_ends_the_command_quietly(smoke_sweep):
    """`bnlab report D | head -1`: the reader left; no traceback, nothing said (it printed
    "Exception ignored ... BrokenPipeError")."""
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE)
    reader.wait()  # gone: what is written to the pipe now meets EPIPE
    done = subprocess.run(
        [sys.executable, "-m", "bn_lab.cli", "report", str(smoke_sweep[0])],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader.stdin.close()
    assert (done.returncode, done.stderr) == (1, "")


# --- a signal is never lost in a finalizer ------------------------------------------------------------

_SLOW_FINALIZER = """
import signal, sys, time
from bn_lab import runtime
signal.signal(signal.SIGINT, runtime.interrupting(KeyboardInterrupt))
class Slow:
    def __del__(self):
        print("in __del__", flush=True)
        time.sleep(1.0)  # what TensorFlow's AtomicFunction.__del__ may take
try:
    Slow()  # collected at once: __del__ runs now
    time.sleep(5)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print("interrupted after the finalizer", flush=True)
"""


def test_ctrl_c_inside_a_finalizer_interrupts_after_it_not_never():
    """Raised inside a __del__, KeyboardInterrupt is printed as "Exception ignored in ...__del__" and
    lost (a Ctrl-C'd sweep printed AtomicFunction.__del__'s): bn_lab's handlers raise it after."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_FINALIZER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "in __del__\n"
    process.send_signal(2)
    out, err = process.communicate(timeout=30)
    assert out == "interrupted after the finalizer\n" and err == "", err


_SLOW_IMPORT = """
import pathlib, signal, sys, time
from bn_lab import runtime
signal.signal(signal.SIGINT, runtime.interrupting(KeyboardInterrupt))
folder = sys.argv[1]
pathlib.Path(folder, "slow_module.py").write_text(
    'import time\\nprint("importing", flush=True)\\ntime.sleep(1.0)\\nprint("imported", flush=True)\\n'
)
sys.path.insert(0, folder)
try:
    import slow_module
    time.sleep(5)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print("interrupted after the import", flush=True)
"""


def test_ctrl_c_inside_an_import_interrupts_after_it(tmp_path):
    """Raised inside the import machinery where C code asked for the import (TensorFlow's structure
    checks), KeyboardInterrupt became a SystemError whose traceback TensorFlow printed (a SIGTERM'd
    sweep's worker): bn_lab's handlers raise it once the import is done."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_IMPORT, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "importing\n"
    process.send_signal(2)
    out, err = process.communicate(timeout=30)
    assert out == "imported\ninterrupted after the import\n" and err == "", err


# --- places: symbolic link loops --------------------------------------------------------------------


@pytest.mark.slow
def test_a_symbolic_link_loop_anywhere_in_a_path_is_one_line(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for args, expected in [
        (("run", SMOKE, "--out", loop), f"error: {loop}: cannot write (Too many levels of symbolic links)"),
        (
            ("run", SMOKE, "--out", loop / "sub"),
            f"error: {loop / 'sub'}: cannot write (Too many levels of symbolic links)",
        ),
        (
            ("run", SMOKE, "--results", loop),
            f"error: {loop / 'smoke'}: cannot write (Too many levels of symbolic links)",
        ),
        (("report", loop), f"error: {loop}: cannot read (Too many levels of symbolic links)"),
    ]:
        line = one_error_line(bnlab(*args), code=1 if args[0] == "run" else 2)
        assert line == expected
    done = bnlab("sweep", SWEEP_SMOKE, "--results", loop)
    assert one_error_line(done, code=1) == (
        f"error: {loop / 'smoke_grid'}: cannot write (Too many levels of symbolic links)"
    )


# --- messages name the caller's options; names fit -----------------------------------------------------


@pytest.mark.slow
def test_each_caller_is_told_its_own_options(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(rundir.RunDirError) as error:
        bn_lab.run(tiny_mlp_config(), out=mine)
    assert str(error.value) == f"{mine}: already holds files bn_lab did not write; use another out= to write elsewhere"
    with pytest.raises(rundir.RunDirError) as error:
        claims.claim(mine, options=callers.SWEEP_COMMAND)
    assert str(error.value).endswith("use --name or --results to write elsewhere")
    sweep_dir = tmp_path / "results" / "smoke_grid"
    shutil.copytree(mine, sweep_dir)
    line = one_error_line(bnlab("sweep", SWEEP_SMOKE, "--results", tmp_path / "results"))
    assert "--out" not in line and line.endswith("use --name or --results to write elsewhere")
    line = one_error_line(bnlab("run", SMOKE, "--seeds", "0,1", "--out", sweep_dir))
    assert "--name" not in line and line.endswith("use --out to write elsewhere")


def test_an_api_call_is_told_its_parameters_never_bnlabs_options(tmp_path):
    """The library's messages are worded for bnlab (--device, --set); an API call's name its own parameters."""
    calls = [
        (lambda: bn_lab.run(SMOKE, device=1), "device=1: unknown device; allowed: auto, cpu, gpu"),
        (lambda: bn_lab.run(SMOKE, overrides={"train.stepz": 3}), "overrides: unknown key 'train.stepz'"),
        (lambda: bn_lab.run(SMOKE, seed="1"), f"{SMOKE} (with overrides): seed must be int, got '1'"),
        (lambda: bn_lab.sweep(SWEEP_SMOKE, threshold="0.9"), "threshold='0.9': must be a number in (0, 1]"),
        (lambda: bn_lab.sweep(SWEEP_SMOKE, figure="x"), "figure='x': unknown figure; allowed: late, final, best"),
        (lambda: bn_lab.sweep(SWEEP_SMOKE, executor="x"), "executor=x: unknown executor; allowed: "),
        (lambda: bn_lab.sweep(SMOKE, ["optimizer.learning_rate"]), "grid=optimizer.learning_rate: expected KEY="),
    ]
    for call, expected in calls:
        with pytest.raises(config.ConfigError if "device" not in expected else runtime.DeviceError) as error:
            call()
        assert str(error.value).startswith(expected) and "--" not in str(error.value), str(error.value)
    assert callers.for_the_api("use --name or --results to write elsewhere (with --set)") == (
        "use name or results to write elsewhere (with overrides)"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_empty_mapping_is_a_value_to_refuse_not_nothing():
    """`arms: {}` trained the lesson's pair: flattening dropped the empty mapping before the check."""
    for key, expected in (
        ("arms", "arms must be a non-empty list of arms ({name: ..., normalizer: ...}), got {}"),
        ("seed", "seed must be int, got {}"),
        ("train.steps", "train.steps must be int, got {}"),
    ):
        with pytest.raises(config.ConfigError) as error:
            config.load(SMOKE, {key: {}})
        assert str(error.value) == f"{SMOKE} (with --set): {expected}"
    assert config.load(SMOKE, {"model": {}}) == config.load(SMOKE)  # a section's: its defaults


def test_many_seeds_make_a_directory_name_that_fits_and_nothing_before_a_refusal(tmp_path):
    seeds = list(range(0, 400, 3))
    name = several_seeds.seeds_directory_name(seeds)
    assert len(name) < 80 and name.endswith(f"-seeds0_3_6_9_12_15-and-{len(seeds) - 6}-more")
    assert rundir.RUN_ID.fullmatch(name) and rundir.RUN_ID.fullmatch(name + "-2")
    assert rundir.RUN_ID.fullmatch(
        several_seeds.seeds_directory_name([4, 5, 6])
    ) and "seeds4-6" in several_seeds.seeds_directory_name([4, 5, 6])
    with pytest.raises(rundir.RunDirError, match="a name in it is 306 bytes; at most 231"):
        claims.new_directory(tmp_path / "exp", "x" * 300)
    assert not (tmp_path / "exp").exists()  # refused before anything was made


def test_a_killed_commit_never_leaves_its_mark_in_a_run(tmp_path):
    """The mark goes with the staging directory; a run whose commit was killed just after its rename
    keeps a stray mark, which makes it neither staging nor foreign (--force still replaces it)."""
    run = tmp_path / "run"
    with claims.claim(run) as claim:
        (claim.staging / rundir.SUMMARY).write_text("{}")
    assert not (run / rundir.STAGING_MARK).exists()
    (run / rundir.STAGING_MARK).write_text(json.dumps({"bn_lab": "staging", "directory": ".run.partial-1"}))
    assert not rundir.is_marked_staging(run)


def test_a_sweep_definition_keeps_its_messages_in_one_line():
    # A sweep value with a terminal's escape is shown escaped wherever the sweep shows it.
    definition = spec.load(SMOKE, ["data.idx_dir=a:\x1b[2Jx,b:y"])
    assert "\x1b" not in json.dumps(definition.manifest()["cells"][0]["grid"], ensure_ascii=False)


@pytest.mark.slow
def test_what_changed_in_a_cells_config_is_shown_bounded(smoke_sweep, tmp_path):
    """--dry-run over a finished cell whose config now lists ten arms with long labels: each
    changed value is cut, and an absent key reads `(not set)`, not `(unknown key)`."""
    from bn_lab.sweeps import driver

    arms = [{"name": f"a{k}", "normalizer": "batch_norm", "label": f"{k:03d}" + "x" * 197} for k in range(10)]
    definition = spec.load(SWEEP_SMOKE, overrides={"arms": arms})
    cell = definition.cells[0]
    shutil.copytree(smoke_sweep[0] / cell.name, tmp_path / cell.name)
    state, detail = driver.cell_state(cell, tmp_path / cell.name)
    assert state == driver.CHANGED
    assert detail.startswith("arms: (not set) -> [{") and len(detail) <= 20 + driver.VALUE_LIMIT, detail


def test_inf_and_nan_on_the_command_line_are_called_what_they_are():
    """`--set optimizer.learning_rate=inf` is the string 'inf' to YAML: "must be float" misled (issue 33, 18)."""
    for given in ("inf", "-inf", "nan", "Infinity"):
        with pytest.raises(config.ConfigError) as error:
            config.load(SMOKE, {"optimizer.learning_rate": given})
        assert (
            str(error.value) == f"{SMOKE} (with --set): optimizer.learning_rate must be a finite number, got {given!r}"
        )
