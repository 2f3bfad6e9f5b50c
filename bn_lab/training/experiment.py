"""One run, end to end: config -> data + initial weights -> training of the arms -> files.

`run_experiment(config, workdir)` trains into the directory it is given and writes
summary.json last. Which directory that is (a claimed staging directory, see
bn_lab.store.rundir), --force and the `latest` link are the caller's business.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

from bn_lab.config import arms, declared
from bn_lab.config.yaml_io import dump
from bn_lab.disk import files
from bn_lab.report import printed
from bn_lab.store import rundir, schema
from bn_lab.training import provenance
from bn_lab.training.progress import Progress
from bn_lab.training.summary import summary


def write_diagnostics(config: dict, diagnostic_rows: list[dict], workdir: Path, diverged_at: dict) -> None:
    """diagnostics.csv and the figures drawn from it alone: diagnostics.png, landscape.png (opt-in)."""
    from bn_lab.report import inside_figures, plots

    files.write_csv(workdir / rundir.DIAGNOSTICS, diagnostic_rows, schema.DIAGNOSTICS_COLUMNS)
    plots.drawn(
        workdir / rundir.DIAGNOSTICS_PLOT,
        inside_figures.diagnostics_figure,
        diagnostic_rows,
        _hidden_layers(config),
        printed.title(config),
        config["diagnostics"]["unit"],
        diverged_at,
        styles=styles(config),
        tight=False,  # it sets its own margins
    )
    if config["diagnostics"]["residual"]:
        from bn_lab.probes.branch_variance import branch_end_layers, stage_positions
        from bn_lab.report.residual_figures import residual_variance_figure

        architecture = declared.architecture(config)
        plots.drawn(
            workdir / rundir.RESIDUAL_VARIANCE_PLOT,
            residual_variance_figure,
            diagnostic_rows,
            list(zip(branch_end_layers(architecture), stage_positions(architecture))),
            printed.title(config),
            styles=styles(config),
        )
    if config["diagnostics"]["landscape"]:
        plots.drawn(
            workdir / rundir.LANDSCAPE_PLOT,
            inside_figures.landscape_figure,
            diagnostic_rows,
            printed.title(config),
            styles=styles(config),
        )


def styles(config: dict) -> dict[str, dict]:
    """How the figures show each arm, in the run's order."""
    return {a.name: a.as_dict() for a in arms.of(config)}


def _hidden_layers(config: dict) -> int:
    return len(declared.architecture(config).hidden)


def run_experiment(
    config: dict,
    workdir: str | Path,
    *,
    device: str = "auto",
    progress: str = "auto",
    command_line: str | None = None,
) -> dict:
    """Trains the arms described by a resolved config, writes its files into workdir; returns the summary.

    workdir must exist; summary.json is written last. progress: "auto" (bar on a terminal,
    lines otherwise), "bar", "lines" or "none".
    """
    started = time.perf_counter()
    workdir = Path(workdir)

    from bn_lab import runtime

    device_info = runtime.configure(device)  # imports TensorFlow

    from bn_lab.data import datasets
    from bn_lab.nets import weights

    dataset = datasets.load(config["data"])
    files.write_text(workdir / rundir.CONFIG, dump(config))
    described = dataset.describe()
    if config["data"]["standardize"]:  # what the networks' inputs are standardized with
        described["pixel_mean"], described["pixel_std"] = dataset.pixel_statistics()
    env = provenance.environment(config, device_info, described, command_line)
    files.write_json(workdir / rundir.ENVIRONMENT, env)

    from bn_lab.training import train
    from bn_lab.training.events import EventWriters, hyperparameters

    initial_weights = weights.initial_weights(config, declared.architecture(config))
    trainer = train.Trainer(config, dataset, initial_weights)
    run_arms = arms.of(config)
    events = EventWriters(
        workdir,
        [a.name for a in run_arms],
        {a.name: hyperparameters(config, a) for a in run_arms},
        trial=f"{config['experiment']}_seed{config['seed']}",
    )
    shorts = {a.name: a.short for a in run_arms}
    bar = Progress(
        config["train"]["steps"], shorts, progress if progress != "none" else "quiet", config["experiment"] + " "
    )

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

    trainer.timers.seconds["start_up"] = time.perf_counter() - started
    from bn_lab.report import plots

    # While the arms train, mostly outside Python's lock: matplotlib's imports and first drawing.
    # A failure there is not collected: the figure it would hit warns when drawn (plots.drawn).
    drawing.submit(plots.warm_up)
    try:
        result = trainer.run(on_evaluation, on_trained)
        # The test split's figures after training come from the final checks, not an evaluation
        # during training: TensorBoard gets them too (the HParams table's test metrics).
        final = [e for e in result.evaluations if e.split == schema.TEST and e.step == trainer.steps_done]
        events.write(trainer.steps_done, final, {})
    finally:
        bar.close()
        events.close()
        drawing.shutdown(wait=True)
    for future in drawn:
        future.result()  # its exception, if any
    trained = time.perf_counter()

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
    diverged_at = {n: r.diverged_at_step for n, r in result.arms.items()}
    from bn_lab.report import inside_figures

    # Each figure is drawn or warned about: one that fails never costs the finished run (plots.drawn).
    plots.drawn(
        workdir / rundir.ACCURACY_PLOT,
        plots.accuracy_figure,
        rows,
        printed.title(config),
        diverged_at,
        styles=styles(config),
    )
    if result.diagnostics and config["diagnostics"]["paper_figure"]:  # (a) is the test accuracy, final one included
        plots.drawn(
            workdir / rundir.PAPER_FIG1_PLOT,
            inside_figures.paper_fig1_figure,
            rows,
            result.diagnostics,
            _hidden_layers(config),
            config["diagnostics"]["unit"],
            printed.title(config),
            styles=styles(config),
        )
    summary_data = summary(
        config, result, time.perf_counter() - started, device_info["device"], dataset.validation.labels
    )
    if config["diagnostics"]["ics"] and result.diagnostics:
        shifts = {n: v.get("covariate_shift") for n, v in summary_data["variants"].items()}
        plots.drawn(
            workdir / rundir.COVARIATE_SHIFT_PLOT,
            inside_figures.covariate_shift_figure,
            rows,
            result.diagnostics,
            _hidden_layers(config),
            config["diagnostics"]["unit"],
            printed.title(config),
            shifts,
            styles=styles(config),
        )
    curves = {n: v["batch_size_curve"] for n, v in summary_data["variants"].items() if v.get("batch_size_curve")}
    if curves:
        plots.drawn(
            workdir / rundir.BATCH_SIZE_PLOT,
            plots.batch_size_curve_figure,
            curves,
            printed.title(config),
            styles=styles(config),
        )
    env["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    files.write_json(workdir / rundir.ENVIRONMENT, env)
    # Where the time went, up to here (summary.json's own writing is left out: it holds them).
    trainer.timers.seconds["files_and_figures"] = time.perf_counter() - trained
    wall = time.perf_counter() - started
    summary_data["timings"] = {"wall": round(wall, 3), **trainer.timers.recorded(wall)}
    files.write_json(workdir / rundir.SUMMARY, summary_data)  # last: marks the run complete
    return summary_data
