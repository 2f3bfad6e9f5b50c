"""One paired run, end to end: config -> data + initial weights -> training -> files.

`run_experiment(config, workdir)` trains into the directory it is given and writes
summary.json last. Which directory that is (a claimed staging directory, see
bn_lab.rundir), --force and the `latest` link are the caller's business.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bn_lab import config as configs
from bn_lab import files, outcome, rundir, schema

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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


def _points(evaluations, variant: str, split: str) -> list[tuple[int, float]]:
    return [(e.step, e.accuracy) for e in evaluations if e.variant == variant and e.split == split]


def variant_summary(config: dict, result, name: str) -> dict:
    """One network's figures: the final point, the robust ones (late window, best), its outcome."""
    r, steps = result.variants[name], config["train"]["steps"]
    validation = _points(result.evaluations, name, schema.VALIDATION)
    figures = {
        "outcome": outcome.classify(r.diverged, r.final_top_class_share),
        "final_val_accuracy": r.final_val_accuracy,
        "late_val_accuracy": None if r.diverged else outcome.late_figures(validation, steps),
        "best_val_accuracy": outcome.best_figure(validation),
        "top_class_share": r.final_top_class_share,
        "final_val_loss": _finite(r.final_val_loss),
        "test_accuracy": r.test_accuracy,
        "test_loss": _finite(r.test_loss),
        "single_sample": {"inference": r.single_sample_inference, "training": r.single_sample_training},
        "predictions": r.predictions,
        "predictions_training_mode": r.predictions_training,
        "diverged": r.diverged,
        "diverged_at_step": r.diverged_at_step,
        "steps_trained": r.steps_trained,
        "steps_per_second": None if r.steps_per_second is None else round(r.steps_per_second, 1),
    }
    inside = last_hidden_layer(result.diagnostics, name)
    if inside:
        figures["diagnostics"] = inside
    precise = _points(result.evaluations, name, schema.PRECISE_BN)
    if precise:  # the BN network: the same figures with exact population statistics
        figures["precise_bn"] = {
            "final_val_accuracy": precise[-1][1] if not r.diverged else None,
            "late_val_accuracy": None if r.diverged else outcome.late_figures(precise, steps),
            "best_val_accuracy": outcome.best_figure(precise),
        }
    return figures


# summary.json's figures from the diagnostics: the last hidden layer at the network's last evaluation.
END_OF_TRAINING = ("dead_fraction", "saturated_fraction", "effective_lr", "kernel_norm")


def last_hidden_layer(diagnostic_rows: list[dict], variant: str) -> dict | None:
    """{step, layer, dead or saturated fraction, effective_lr (BN), kernel_norm} at the last measurement.

    For a diverged network, its last measurement before it diverged.
    """
    mine = [r for r in diagnostic_rows if r["variant"] == variant and r["layer"] != "all"]
    if not mine:
        return None
    step, layer = max(r["step"] for r in mine), max(r["layer"] for r in mine)
    values = {r["quantity"]: r["value"] for r in mine if (r["step"], r["layer"]) == (step, layer)}
    return {"step": step, "layer": layer, **{q: values[q] for q in END_OF_TRAINING if q in values}}


def summary(config: dict, result, wall_seconds: float, device: str, validation_labels) -> dict:
    variants = {name: variant_summary(config, result, name) for name in result.variants}
    for figures in variants.values():
        figures["wall_seconds"] = round(wall_seconds, 2)
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
        "late_window": {
            "fraction": outcome.LATE_FRACTION,
            "after_step": math.floor(outcome.late_window_start(config["train"]["steps"])),
        },
        # What the lesson's TF1 code printed for a diverged network: the argmax of NaN logits
        # is class 0, so its "accuracy" is the share of class 0 in the validation split.
        "tf1_diverged_val_accuracy": float((validation_labels == 0).mean()),
        "variants": variants,
    }


def title(config: dict, limit: int = 90) -> str:
    """A figure's title: the experiment and its description, cut at a word to `limit` characters."""
    text = config["experiment"] + (f": {config['description']}" if config["description"] else "")
    text = text if len(text) <= limit else text[: text.rfind(" ", 0, limit - 1)] + " …"
    return text.replace("$", r"\$")  # a figure title, not matplotlib's math mode (`$x$` after training would fail)


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

    @staticmethod
    def text(evaluations) -> str:
        """'validation acc noBN 0.97  BN 0.98  (exact stats 0.98)  test acc noBN 0.96  BN 0.98': one part per split."""
        parts = {}  # split (exact statistics go with the validation split they were taken on) -> its texts
        for e in evaluations:
            if e.split == schema.PRECISE_BN:
                parts.setdefault(schema.VALIDATION, []).append(f"(exact stats {e.accuracy:.4f})")
            else:
                parts.setdefault(e.split, []).append(f"{VARIANT_SHORT[e.variant]} {e.accuracy:.4f}")
        return "  ".join(f"{split.replace('_', ' ')} acc " + "  ".join(texts) for split, texts in parts.items())

    def __call__(self, step: int, evaluations) -> None:
        text = self.text(evaluations)
        if self.bar is not None:
            self.bar.update(step - self.last_step)
            if evaluations:
                self.bar.set_postfix_str(text)
        elif self.mode == "lines":
            rate = f"  ({step / (time.perf_counter() - self.started):,.0f} steps/s)" if step else ""
            print(f"{self.label}step {step:>6}/{self.total}  {text}{rate}", flush=True)
        self.last_step = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


VARIANT_SHORT = {"without_bn": "noBN", "with_bn": "BN"}


def _fmt(x, digits=4):
    return "—" if x is None else f"{x:.{digits}f}"


def _late(figures) -> str:
    return "—" if figures is None else f"{figures['mean']:.4f} [{figures['min']:.2f}-{figures['max']:.2f}]"


def _best(figures) -> str:
    return "—" if figures is None else f"{figures['accuracy']:.4f} @ {figures['step']:,}"


def _precise(r: dict, key: str, show) -> str:
    return show(r["precise_bn"][key]) if "precise_bn" in r else ""


def report_text(summary_data: dict, run_dir: Path) -> str:
    """The table `bnlab run` prints: outcome, the robust figures, then the final checks."""
    v = summary_data["variants"]
    names = [n for n in ("without_bn", "with_bn") if n in v]
    late_points = next((r["late_val_accuracy"]["points"] for r in v.values() if r["late_val_accuracy"]), None)
    rows = [
        ("outcome", lambda r: r["outcome"]),
        ("final validation accuracy", lambda r: _fmt(r["final_val_accuracy"])),
        ("late validation accuracy [min-max]", lambda r: _late(r["late_val_accuracy"])),
        ("best validation accuracy @ step", lambda r: _best(r["best_val_accuracy"])),
        ("  exact population statistics: final", lambda r: _precise(r, "final_val_accuracy", _fmt)),
        ("  exact population statistics: late", lambda r: _precise(r, "late_val_accuracy", _late)),
        ("test accuracy", lambda r: _fmt(r["test_accuracy"])),
        ("single images, inference mode", lambda r: _fmt(r["single_sample"]["inference"])),
        ("single images, training mode", lambda r: _fmt(r["single_sample"]["training"])),
        (
            "training speed, steps/s",
            lambda r: "—" if r["steps_per_second"] is None else f"{r['steps_per_second']:,.0f}",
        ),
    ]
    if not any("precise_bn" in v[n] for n in names):
        rows = [row for row in rows if "exact" not in row[0]]
    header = f"{'':38}" + "".join(f"{n.replace('_', ' '):>24}" for n in names)
    lines = [
        f"{summary_data['experiment']} (seed {summary_data['seed']}, BN backend {summary_data['backend']}, "
        f"{summary_data['steps']:,} steps, {summary_data['wall_seconds']:.1f} s on {summary_data['device']})",
        header,
    ]
    for label, get in rows:
        lines.append(f"{label:38}" + "".join(f"{get(v[n]):>24}" for n in names))
    window = summary_data["late_window"]
    if late_points:
        lines.append(
            f"late: mean [min-max] of the {late_points} validation evaluation{'s' if late_points > 1 else ''} after step "
            f"{window['after_step']:,} "
            f"(the last {window['fraction']:.0%} of training)"
        )
    for n in names:
        if v[n]["diverged"]:
            lines.append(
                f"{n.replace('_', ' ')}: loss became NaN/inf at step {v[n]['diverged_at_step']:,}; training stopped "
                f"(the lesson's TF1 code printed {summary_data['tf1_diverged_val_accuracy']:.4f} for such a network: "
                "the argmax of NaN logits is class 0, and that is class 0's share of the validation images)"
            )
        elif v[n]["outcome"] == outcome.COLLAPSED:
            lines.append(
                f"{n.replace('_', ' ')}: collapsed: {v[n]['top_class_share']:.0%} of the validation images get the same "
                "class, so its accuracy is about that class's share"
            )
    written = ", ".join(name for name in rundir.RUN_ENTRIES if (Path(run_dir) / name).is_file())
    lines.append(f"results: {run_dir}/ ({written})")
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------


def write_diagnostics(config: dict, diagnostic_rows: list[dict], workdir: Path, diverged_at: dict) -> None:
    """diagnostics.csv and the figures drawn from it alone: diagnostics.png, landscape.png (opt-in)."""
    from bn_lab import plots

    files.write_csv(workdir / rundir.DIAGNOSTICS, diagnostic_rows, schema.DIAGNOSTICS_COLUMNS)
    files.save_figure(
        workdir / rundir.DIAGNOSTICS_PLOT,
        plots.diagnostics_figure(
            diagnostic_rows, _hidden_layers(config), title(config), config["diagnostics"]["unit"], diverged_at
        ),
        tight=False,  # it sets its own margins
    )
    if config["diagnostics"]["landscape"]:
        files.save_figure(workdir / rundir.LANDSCAPE_PLOT, plots.landscape_figure(diagnostic_rows, title(config)))


def _hidden_layers(config: dict) -> int:
    from bn_lab import models

    return len(models.architecture(config)[1])


def run_experiment(
    config: dict,
    workdir: str | Path,
    *,
    device: str = "auto",
    progress: str = "auto",
    command_line: str | None = None,
) -> dict:
    """Trains the pair described by a resolved config, writes its files into workdir; returns the summary.

    workdir must exist; summary.json is written last. progress: "auto" (bar on a terminal,
    lines otherwise), "bar", "lines" or "none".
    """
    started = time.perf_counter()
    workdir = Path(workdir)

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
    files.write_text(workdir / rundir.CONFIG, configs.dump(config))
    env = environment(config, device_info, data.describe(mnist), command_line)
    files.write_json(workdir / rundir.ENVIRONMENT, env)

    from bn_lab import train
    from bn_lab.events import EventWriters

    initial_weights = models.initial_weights(config)
    trainer = train.PairTrainer(config, mnist, initial_weights)
    events = EventWriters(workdir, schema.VARIANTS)
    bar = Progress(config["train"]["steps"], progress if progress != "none" else "quiet", config["experiment"] + " ")

    def on_evaluation(step, evaluations, measurements):
        events.write(step, evaluations, measurements)
        bar(step, evaluations)

    # The diagnostics' figures are drawn while the final checks run, which are mostly XLA
    # compiling and running outside Python's lock: a run's wait is shorter by part of the
    # drawing. Nothing else draws meanwhile (matplotlib is not thread-safe).
    drawing = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bnlab-figures")
    drawn = []

    def on_trained(diagnostic_rows, diverged_at):
        if diagnostic_rows:
            drawn.append(drawing.submit(write_diagnostics, config, diagnostic_rows, workdir, diverged_at))

    try:
        result = trainer.run(on_evaluation, on_trained)
    finally:
        bar.close()
        events.close()
        drawing.shutdown(wait=True)
    for future in drawn:
        future.result()  # its exception, if any

    rows = [
        {
            "variant": e.variant,
            "step": e.step,
            "split": e.split,
            "loss": e.loss,
            "accuracy": e.accuracy,
            "top_class_share": e.top_class_share,
        }
        for e in result.evaluations
    ]
    files.write_csv(workdir / rundir.METRICS, rows, schema.METRICS_COLUMNS)
    files.write_npz(workdir / rundir.WEIGHTS, trainer.weights())
    diverged_at = {n: r.diverged_at_step for n, r in result.variants.items()}
    from bn_lab import plots

    plots.accuracy_plot(rows, title(config), workdir / rundir.ACCURACY_PLOT, diverged_at)
    if result.diagnostics and config["diagnostics"]["paper_figure"]:  # (a) is the test accuracy, final one included
        files.save_figure(
            workdir / rundir.PAPER_FIG1_PLOT,
            plots.paper_fig1_figure(
                rows, result.diagnostics, _hidden_layers(config), config["diagnostics"]["unit"], title(config)
            ),
        )
    summary_data = summary(
        config, result, time.perf_counter() - started, device_info["device"], mnist.validation.labels
    )
    env["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    files.write_json(workdir / rundir.ENVIRONMENT, env)
    files.write_json(workdir / rundir.SUMMARY, summary_data)  # last: marks the run complete
    return summary_data
