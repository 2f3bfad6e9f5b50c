"""The `bnlab` command. Thin: it parses, validates and calls library functions.

TensorFlow is imported only inside the commands that train, so `--help` is instant.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from bn_lab import registry
from bn_lab.cli.shell import (
    DEVICE_OPTION,
    FIGURE_OPTION,
    SET_OPTION,
    THRESHOLD_OPTION,
    WIDE_OPTION,
    OneLineErrors,
    UserError,
    call,
    finish,
    on_sigterm,
    parse_overrides,
    results_option,
)
from bn_lab.config import bundled
from bn_lab.config import loading as configs
from bn_lab.runtime import interrupting, own_process  # runtime imports TensorFlow only in configure()
from bn_lab.store import callers


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bn_lab")
def main():
    """Batch-normalization experiments on MNIST, reproducibly.

    Each run trains its arms (by default the pair without and with BN; any
    normalizers with `arms:`) from the same initial weights on the same
    mini-batches, and writes curves, plots and single-image inference checks
    under results/.

    \b
    Examples:
      bnlab run configs/relu_lr2_badinit.yaml
      bnlab run configs/smoke.yaml --set seed=3 --out /tmp/smoke
      bnlab sweep configs/sweep_lesson.yaml --jobs 2
      bnlab data
    """
    signal.signal(signal.SIGTERM, on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (a shell's background job ignores it)
        signal.signal(signal.SIGINT, interrupting(KeyboardInterrupt))  # Python's own, but never inside a finalizer
    own_process()


@main.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@SET_OPTION
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Exact run directory to write.")
@results_option("Root for results/<experiment>/<run-id>/ when --out is not given.")
@DEVICE_OPTION
@click.option("--force", is_flag=True, help="Replace an existing run at --out (only a bn_lab run; never other files).")
@click.option(
    "--seeds",
    metavar="S1,S2",
    help="Train the arms for each of these seeds (e.g. 0,1,2,3,4) into one directory, and print a table over seeds.",
)
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="With --seeds: seeds at once.")
@click.option("--quiet", is_flag=True, help="No progress and no summary on stdout.")
@click.option(
    "--print-config", is_flag=True, help="Print the resolved config (every default, the --sets applied) and exit."
)
def run(config_file, overrides, out, results_root, device, force, seeds, jobs, quiet, print_config):
    """Train the arms described by CONFIG: the pair without and with BN, or its arms:.

    CONFIG is a YAML file, or the name of a bundled one (`bnlab configs` lists them:
    `bnlab run smoke` works from any directory). Writes config.yaml, environment.json,
    metrics.csv, summary.json, weights.npz, accuracy.png, diagnostics.csv,
    diagnostics.png and TensorBoard events into the run directory (docs/run-files.md):
    --out, or results/<experiment>/<run-id>/ with a `latest` file beside it that names it.
    """
    from bn_lab.config.yaml_io import dump
    from bn_lab.report import printed
    from bn_lab.store import rundir
    from bn_lab.sweeps import seeds as several_seeds
    from bn_lab.training import launch

    overrides = parse_overrides(overrides)
    config_file = call(bundled.path, config_file)
    config = call(configs.load, config_file, overrides)
    if print_config:
        click.echo(dump(config), nl=False)
        return
    origin = configs.origin(config_file, overrides)  # how the pre-run checks name it
    if seeds is not None:
        from bn_lab.report import sweep_report as report
        from bn_lab.sweeps import spec

        result = call(
            several_seeds.run_seeds,
            config,
            call(spec.parse_seeds, seeds),
            out=out,
            results_root=results_root,
            jobs=jobs,
            force=force,
            device=device,
            progress="none" if quiet else "auto",
            source=str(config_file),
            options=callers.RUN_COMMAND,
        )
        if not quiet:
            click.echo(report.seeds_table(result.sweep_dir))
            click.echo(
                f"results: {result.sweep_dir}/ (one run directory per seed, {rundir.REPORT}, {rundir.SUMMARY_CSV})"
            )
        if result.problem:
            click.echo(f"error: {result.problem}", err=True)
            sys.exit(1)
        return
    if jobs != 1:
        raise UserError("--jobs is for --seeds")
    run_dir = call(
        launch.run_config,
        config,
        out=out,
        results_root=results_root,
        device=device,
        force=force,
        progress="none" if quiet else "auto",
        origin=origin,
        options=callers.RUN_COMMAND,
    )
    if not quiet:
        click.echo(printed.report_text(rundir.load_summary(run_dir), run_dir))


@main.command()
@click.argument("sweep_file", metavar="SWEEP", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--grid",
    multiple=True,
    metavar="KEY=V1,V2",
    help="With a base config instead of a sweep file: an axis, e.g. --grid optimizer.learning_rate=0.01,1,2 "
    "or named values --grid init.scale=good:0.05,bad:5 (repeatable).",
)
@click.option("--seeds", metavar="S1,S2", help="Seeds of every grid point, e.g. 0,1,2 (overrides the sweep file's).")
@click.option(
    "--name",
    help="Sweep name: <results>/<name>/ (default: the sweep file's `name:`, or <experiment>_sweep with --grid).",
)
@SET_OPTION
@results_option("Cells go to <results>/<sweep-name>/<cell-name>/.")
@click.option(
    "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Cells at once, each in its own process."
)
@click.option(
    "--executor",
    type=click.Choice(registry.EXECUTORS.names()),
    default="local",
    show_default=True,
    help="local: worker processes (--jobs at a time); inprocess: one by one in this process; "
    "ray: cells as Ray tasks, results come back here, no shared disk needed "
    "(needs pip install 'bn_lab[ray]' here and on every node of the cluster).",
)
@click.option(
    "--ray-address",
    metavar="ADDR",
    help="An existing Ray cluster, e.g. 10.0.0.5:6379 (default: $RAY_ADDRESS, else a new local one).",
)
@DEVICE_OPTION
@click.option("--force", is_flag=True, help="Rerun cells whose finished run has a different config.")
@THRESHOLD_OPTION
@FIGURE_OPTION
@WIDE_OPTION
@click.option("--dry-run", is_flag=True, help="List the cells and whether each is complete; run nothing.")
@click.option("--quiet", is_flag=True, help="No progress and no report table on stdout.")
def sweep(
    sweep_file,
    grid,
    seeds,
    name,
    overrides,
    results_root,
    jobs,
    executor,
    ray_address,
    device,
    force,
    threshold,
    figure,
    wide,
    dry_run,
    quiet,
):
    """Run every cell of a grid of paired runs, then write the report.

    SWEEP is a sweep file (a base config, grid axes, seeds; see configs/sweep_lesson.yaml),
    or a base config with --grid axes; either may be a bundled one's name (`bnlab configs`). Every cell is one `bnlab run` into
    <results>/<sweep-name>/<cell-name>/, e.g. results/lesson/relu_lr2_badinit_seed1/.
    Cells already complete with the same config are skipped, so rerunning resumes.

    Exit status: 0 if every cell completed (a diverged network counts: it is a result),
    1 if some failed, 2 for bad input.

    \b
    Examples:
      bnlab sweep configs/sweep_lesson.yaml --jobs 2
      bnlab sweep configs/sweep_lesson.yaml --seeds 0 --dry-run
      bnlab sweep configs/smoke.yaml --grid model.activation=relu,sigmoid --seeds 0,1
      bnlab sweep configs/sweep_lesson.yaml --executor ray --ray-address 10.0.0.5:6379
    """
    from bn_lab.sweeps import driver, spec

    if ray_address and executor != "ray":
        raise UserError("--ray-address is for --executor ray")
    if executor == "ray" and jobs != 1:
        raise UserError("--jobs is for the local executor; Ray runs as many cells at once as the cluster has CPUs")
    if executor == "inprocess" and jobs != 1:
        raise UserError("--jobs is for the local executor; inprocess runs one cell at a time, in this process")
    definition = call(
        spec.load,
        call(bundled.path, sweep_file),  # a sweep file, or with --grid a base config: either may be bundled
        grid,
        name=name,
        seeds=call(spec.parse_seeds, seeds) if seeds is not None else None,
        overrides=parse_overrides(overrides),
    )
    if dry_run:
        click.echo(driver.describe(definition, results_root / definition.name))
        return
    result = call(
        driver.run_sweep,
        definition,
        results_root,
        jobs=jobs,
        executor=executor,
        ray_address=ray_address,
        device=device,
        force=force,
        progress="none" if quiet else "auto",
        threshold=threshold,
        figure=figure,
        options=callers.SWEEP_COMMAND,
        wide=wide,
    )
    if not quiet:
        click.echo(result.report)
    if result.problem:
        click.echo(f"error: {result.problem}", err=True)
        sys.exit(1)


@main.command()
@click.argument("path", metavar="PATH", type=click.Path(path_type=Path))
@WIDE_OPTION
def show(path, wide):
    """Print a finished run's table as `bnlab run` printed it (PATH: a run directory or its
    `latest` file), a `--seeds` directory's table over seeds, or a sweep's report table.
    Reads the files; writes nothing."""
    from bn_lab.report.shown import shown

    click.echo(call(shown, path, wide=wide))


@main.command("configs")
@click.argument("name", required=False)
def list_configs(name):
    """List the bundled configs and sweep files, grouped, or print the one called NAME.

    Each runs by name from any directory (`bnlab run smoke`, `bnlab sweep sweep_smoke`);
    `bnlab configs smoke > mine.yaml` gives a copy to edit.
    """
    if name is None:
        click.echo(bundled.listing())
        return
    click.echo(call(bundled.path, name).read_text(encoding="utf-8"), nl=False)


@main.command()
@click.argument("sweep_dir", metavar="SWEEP_DIR", type=click.Path(file_okay=False, path_type=Path))
@THRESHOLD_OPTION
@FIGURE_OPTION
@WIDE_OPTION
def report(sweep_dir, threshold, figure, wide):
    """Write the report of a sweep directory (results/<sweep-name>/), finished or not.

    Writes summary.csv (one row per cell), report.md (one row per grid point, over seeds),
    heatmap.png, curves.png and, for relu cells with a bad init and diagnostics on,
    mechanism.png into SWEEP_DIR, and prints the table.
    """
    from bn_lab.report import sweep_report as reports

    click.echo(call(reports.write_report, sweep_dir, threshold=threshold, figure=figure, wide=wide))


@main.command()
@click.option(
    "--dataset",
    type=click.Choice(registry.DATASETS.names()),
    default="mnist",
    show_default=True,
    help="Which dataset (data.dataset).",
)
@click.option("--path", "path", type=click.Path(dir_okay=False), help="npz: the file (data.path).")
@click.option(
    "--source",
    type=click.Choice(registry.DATA_SOURCES.names()),
    default="auto",
    show_default=True,
    help="mnist: which source to use (data.source).",
)
@click.option("--idx-dir", type=click.Path(file_okay=False), help="mnist: folder with the four IDX files.")
def data(dataset, path, source, idx_dir):
    """Say what a dataset is and where it comes from: its images, classes, splits and checksums."""
    from bn_lab.data import datasets

    section = {**configs.defaults()["data"], "dataset": dataset, "path": path, "source": source, "idx_dir": idx_dir}
    loaded = call(datasets.load, section)
    info, declared = loaded.describe(), loaded.declaration
    height, width, channels = declared.image_shape
    click.echo(f"dataset:        {declared.name}")
    click.echo(f"images:         {height}×{width}×{channels}, {declared.classes} classes")
    click.echo(f"source:         {info['source']}")
    click.echo(f"path:           {info['path']}")
    if "cache_path" in info:
        click.echo(f"cache:          {info['cache_path']}")
    sizes = info["sizes"]
    click.echo(f"splits:         train {sizes['train']:,}  validation {sizes['validation']:,}  test {sizes['test']:,}")
    click.echo(f"file sha256:    {info['file_sha256']}")
    click.echo(f"content sha256: {info['content_sha256']}")


def entry() -> None:
    """`bnlab` as a process of its own: the console script and `python -m bn_lab.cli`."""
    try:
        returned = main(prog_name="bnlab")  # click's own exits (--help, --version) return their status
        code = returned if type(returned) is int else 0
    except SystemExit as done:
        code = done.code
    finish(code)
