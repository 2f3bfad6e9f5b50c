"""One paired run, end to end: config -> data + initial weights -> training -> files.

A run is written into a hidden staging directory beside its final place and
renamed into place only when every file is there, so an interrupted run never
leaves anything that looks complete, and `summary.json` in a run directory
always means the run finished.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bn_lab import config as configs
from bn_lab import files

PROJECT_ROOT = Path(__file__).resolve().parent.parent
METRICS_COLUMNS = ["variant", "step", "split", "loss", "accuracy"]
COMPLETE_MARKER = "summary.json"  # written last, inside the staging directory


class RunExistsError(Exception):
    """The run directory already holds results; worded for the user."""


# --- run directories ------------------------------------------------------------------


def default_run_dir(results_root: str | Path, config: dict) -> Path:
    """results/<experiment>/<YYYYmmdd-HHMMSS>-seed<seed>, made unique if needed."""
    base = Path(results_root) / config["experiment"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = base / f"{stamp}-seed{config['seed']}"
    n = 2
    while candidate.exists():
        candidate = base / f"{stamp}-seed{config['seed']}-{n}"
        n += 1
    return candidate


def is_complete(run_dir: str | Path) -> bool:
    return (Path(run_dir) / COMPLETE_MARKER).is_file()


def check_can_write(run_dir: Path, force: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise RunExistsError(f"{run_dir}: exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not force:
        raise RunExistsError(
            f"{run_dir}: already holds a run; use --force to replace it or --out to write elsewhere"
        )


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine still runs (the owner of a staging directory)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _staging_dir(run_dir: Path) -> Path:
    """A fresh hidden directory beside run_dir; removes those left by killed runs."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.parent.glob(f".{run_dir.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
    staging = run_dir.parent / f".{run_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def move_into_place(staging: Path, run_dir: Path) -> None:
    """Puts a finished directory at run_dir; an old one is set aside first and removed after."""
    old = None
    if run_dir.exists():  # empty, or --force: set the old run aside first, drop it after
        old = run_dir.parent / f".{run_dir.name}.replaced-{os.getpid()}"
        os.replace(run_dir, old)
    os.replace(staging, run_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _point_latest(run_dir: Path) -> None:
    """results/<experiment>/latest -> the newest run (a relative symlink, swapped atomically)."""
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:  # e.g. a file system without symlinks: the link is a convenience only
        tmp.unlink(missing_ok=True)


# --- records ----------------------------------------------------------------------------


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(config: dict, device: dict, data_description: dict, command_line: str | None) -> dict:
    import keras
    import numpy
    import tensorflow as tf

    import bn_lab

    return {
        "bn_lab": bn_lab.__version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "host": platform.node(),  # which machine of a Ray cluster ran it
        "pid": os.getpid(),  # which process of a sweep ran it
        "cpu_count": os.cpu_count(),
        **device,
        "seed": config["seed"],
        "data": data_description,
        "git_commit": _git_commit(),
        "command_line": command_line if command_line is not None else shlex.join(sys.argv),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _finite(x):
    return x if x is None or math.isfinite(x) else None


def summary(config: dict, result, wall_seconds: float, device: str) -> dict:
    variants = {}
    for name, r in result.variants.items():
        variants[name] = {
            "final_val_accuracy": r.final_val_accuracy,
            "final_val_loss": _finite(r.final_val_loss),
            "test_accuracy": r.test_accuracy,
            "test_loss": _finite(r.test_loss),
            "single_sample": {"inference": r.single_sample_inference, "training": r.single_sample_training},
            "predictions": r.predictions,
            "predictions_training_mode": r.predictions_training,
            "diverged": r.diverged,
            "diverged_at_step": r.diverged_at_step,
            "steps_trained": r.steps_trained,
            # Both networks train in the same compiled loop, so they share the clock.
            "steps_per_second": round(r.steps_trained / result.train_seconds, 1) if result.train_seconds else None,
            "wall_seconds": round(wall_seconds, 2),
        }
    return {
        "experiment": config["experiment"],
        "description": config["description"],
        "seed": config["seed"],
        "backend": config["bn"]["backend"],
        "model": config["model"]["name"],
        "activation": config["model"]["activation"],
        "learning_rate": config["optimizer"]["learning_rate"],
        "init_scale": config["init"]["scale"],
        "steps": config["train"]["steps"],
        "single_samples": result.single_samples,
        "config_digest": configs.digest(config),
        "device": device,
        "train_seconds": round(result.train_seconds, 2),
        "wall_seconds": round(wall_seconds, 2),
        "variants": variants,
    }


def title(config: dict) -> str:
    return config["experiment"] + (f": {config['description']}" if config["description"] else "")


# --- progress ----------------------------------------------------------------------------


class Progress:
    """A tqdm bar on a terminal; one line per evaluation in logs; nothing when quiet."""

    def __init__(self, total_steps: int, mode: str = "auto", label: str = ""):
        self.mode = ("bar" if sys.stderr.isatty() else "lines") if mode == "auto" else mode
        self.total, self.label, self.started, self.bar = total_steps, label, time.perf_counter(), None
        self.last_step = 0
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, desc=label or "steps", unit="step", leave=False, dynamic_ncols=True)

    def __call__(self, step: int, evaluations) -> None:
        accuracies = {e.variant: e.accuracy for e in evaluations}
        text = "  ".join(f"{VARIANT_SHORT[v]} {a:.4f}" for v, a in accuracies.items())
        split = evaluations[0].split if evaluations else "validation"
        if self.bar is not None:
            self.bar.update(step - self.last_step)
            if evaluations:
                self.bar.set_postfix_str(f"{split} acc {text}")
        elif self.mode == "lines":
            rate = f"  ({step / (time.perf_counter() - self.started):,.0f} steps/s)" if step else ""
            print(f"{self.label}step {step:>6}/{self.total}  {split} acc {text}{rate}", flush=True)
        self.last_step = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


VARIANT_SHORT = {"without_bn": "noBN", "with_bn": "BN"}


def _fmt(x, digits=4):
    return "—" if x is None else f"{x:.{digits}f}"


def report_text(summary_data: dict, run_dir: Path) -> str:
    v = summary_data["variants"]
    names = [n for n in ("without_bn", "with_bn") if n in v]
    rows = [
        ("final validation accuracy", lambda r: "diverged" if r["diverged"] else _fmt(r["final_val_accuracy"])),
        ("test accuracy", lambda r: _fmt(r["test_accuracy"])),
        ("single images, inference mode", lambda r: _fmt(r["single_sample"]["inference"])),
        ("single images, training mode", lambda r: _fmt(r["single_sample"]["training"])),
    ]
    header = f"{'':32}" + "".join(f"{n.replace('_', ' '):>14}" for n in names)
    lines = [
        f"{summary_data['experiment']} (seed {summary_data['seed']}, BN backend {summary_data['backend']}, "
        f"{summary_data['steps']:,} steps, {summary_data['wall_seconds']:.1f} s on {summary_data['device']})",
        header,
    ]
    for label, get in rows:
        lines.append(f"{label:32}" + "".join(f"{get(v[n]):>14}" for n in names))
    for n in names:
        if v[n]["diverged"]:
            lines.append(f"{n.replace('_', ' ')}: loss became NaN/inf at step {v[n]['diverged_at_step']:,}; training stopped")
    lines.append(f"results: {run_dir}/ (summary.json, metrics.csv, accuracy.png, environment.json, config.yaml)")
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------


def run_experiment(
    config: dict,
    run_dir: str | Path | None = None,
    *,
    results_root: str | Path = "results",
    device: str = "auto",
    force: bool = False,
    progress: str = "auto",
    command_line: str | None = None,
) -> Path:
    """Trains the pair described by a resolved config and writes the run directory; returns it.

    progress: "auto" (bar on a terminal, lines otherwise), "bar", "lines" or "none".
    """
    started = time.perf_counter()
    explicit = run_dir is not None
    run_dir = Path(run_dir) if explicit else default_run_dir(results_root, config)
    check_can_write(run_dir, force)  # before the slow imports: fail fast

    from bn_lab import runtime

    device_info = runtime.configure(device)  # imports TensorFlow

    from bn_lab import data, models
    mnist = data.load_mnist(
        source=config["data"]["source"],
        idx_dir=config["data"]["idx_dir"],
        train_limit=config["data"]["train_limit"],
        val_limit=config["data"]["val_limit"],
        test_limit=config["data"]["test_limit"],
    )
    staging = _staging_dir(run_dir)
    try:
        files.write_text(staging / "config.yaml", configs.dump(config))
        env = environment(config, device_info, data.describe(mnist), command_line)
        files.write_json(staging / "environment.json", env)

        import tensorflow as tf

        from bn_lab import train

        initial_weights = models.initial_weights(config)
        trainer = train.PairTrainer(config, mnist, initial_weights)
        writers = {v: tf.summary.create_file_writer(str(staging / "tensorboard" / v)) for v in train.VARIANTS}
        bar = Progress(config["train"]["steps"], progress if progress != "none" else "quiet", config["experiment"] + " ")

        def on_evaluation(step, evaluations):
            for e in evaluations:
                with writers[e.variant].as_default(step=step):
                    tf.summary.scalar(f"{e.split}/accuracy", e.accuracy)
                    tf.summary.scalar(f"{e.split}/loss", e.loss)
            bar(step, evaluations)

        try:
            result = trainer.run(on_evaluation)
        finally:
            bar.close()
            for w in writers.values():
                w.close()

        wall = time.perf_counter() - started
        rows = [
            {"variant": e.variant, "step": e.step, "split": e.split, "loss": e.loss, "accuracy": e.accuracy}
            for e in result.evaluations
        ]
        files.write_csv(staging / "metrics.csv", rows, METRICS_COLUMNS)
        diverged_at = {n: r.diverged_at_step for n, r in result.variants.items()}
        from bn_lab import plots

        plots.accuracy_plot(rows, title(config), staging / "accuracy.png", diverged_at)
        summary_data = summary(config, result, time.perf_counter() - started, device_info["device"])
        env["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        files.write_json(staging / "environment.json", env)
        files.write_json(staging / COMPLETE_MARKER, summary_data)  # last: marks the run complete
        move_into_place(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not explicit:
        _point_latest(run_dir)
    return run_dir


def load_summary(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / COMPLETE_MARKER).read_text())
