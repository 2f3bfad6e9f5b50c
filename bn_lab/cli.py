"""The `bnlab` command. Thin: it parses, validates and calls library functions.

TensorFlow is imported only inside the commands that train, so `--help` is instant.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from pathlib import Path

import click

from bn_lab import registry
from bn_lab.config import loading as configs
from bn_lab.config.user_text import printable
from bn_lab.config.yaml_io import ConfigError
from bn_lab.report import outcome
from bn_lab.runtime import DEVICES, interrupting, own_process  # runtime imports TensorFlow only in configure()
from bn_lab.store import claims

DEVICE_CHOICE = click.Choice(DEVICES)
BAD_INPUT = 2  # exit status for every problem with what the user gave us


class UserError(click.ClickException):
    """One line on stderr, no traceback, exit status 2."""

    exit_code = BAD_INPUT

    def show(self, file=None):
        # One line whatever the message quotes (a path with a line break, a value with an escape sequence).
        click.echo(f"error: {printable(self.format_message(), 1000)}", err=True)


class CannotWrite(UserError):
    """Results could not be written (read-only, full disk): one line naming the path, exit status 1."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, which bnlab handles as it handles Ctrl-C."""

    # Set when one arrives: a library in between may pass it on as a plain KeyboardInterrupt (Ray's
    # wait does), and the exit status and line must still say SIGTERM.
    received = False


def _terminated() -> Terminated:
    Terminated.received = True
    return Terminated()


_on_sigterm = interrupting(_terminated)


def _user_errors():
    """Exceptions that mean bad input (a config, a file, a device, a taken directory), not a bug."""
    from bn_lab.config.yaml_io import SweepError
    from bn_lab.data.datasets import DataError
    from bn_lab.runtime import DeviceError
    from bn_lab.store.rundir import RunDirError

    return ConfigError, DataError, RunDirError, DeviceError, SweepError


def _call(function, *args, **kwargs):
    from bn_lab.disk.files import OutputError

    try:
        return function(*args, **kwargs)
    except _user_errors() as e:
        raise UserError(str(e)) from None
    except OutputError as e:
        raise CannotWrite(str(e)) from None
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated) or Terminated.received
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        click.echo(f"{what}: nothing incomplete was left looking complete", err=True)
        sys.exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))


def parse_overrides(values: tuple[str, ...]) -> dict:
    overrides = {}
    for text in values:
        key, value = _call(configs.parse_override, text)
        overrides[key] = value
    return overrides


SET_OPTION = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set optimizer.learning_rate=0.5 (repeatable).",
)
DEVICE_OPTION = click.option(
    "--device",
    type=DEVICE_CHOICE,
    default="auto",
    show_default=True,
    help="cpu hides GPUs; gpu fails if there is none; auto uses a GPU when there is one.",
)


THRESHOLD_OPTION = click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.9,
    show_default=True,
    help="Validation accuracy (of the aggregated figure) that counts as success in the report.",
)
FIGURE_OPTION = click.option(
    "--figure",
    type=click.Choice(list(outcome.FIGURES)),
    default="late",
    show_default=True,
    help="The accuracy of each run the report aggregates: late (mean over the last 10% of training), "
    "final (the last evaluation, as the lesson printed) or best.",
)


def results_option(help_text: str):
    return click.option(
        "--results",
        "results_root",
        type=click.Path(file_okay=False, path_type=Path),
        default="results",
        show_default=True,
        help=help_text,
    )


# What writing to standard output meets when it cannot take more: a full disk (`> /dev/full`), a
# closed pipe (`| head -1`), an I/O error. Every other OSError is turned into a line of its own.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EPIPE, errno.EIO, errno.EFBIG, errno.EDQUOT}


def _printable_anywhere() -> None:
    """Every character bnlab prints (≈, —, ±, a label's) survives the terminal's encoding
    (PYTHONIOENCODING=latin-1, a C locale): what it cannot encode is escaped, never an error."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _output_failed(error: OSError) -> None:
    """Standard output took no more: one line (none for a reader that left, `| head`), exit 1. What
    the command wrote to disk is kept; what was still to print is dropped, so that Python's own
    flush at exit meets no error again."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if error.errno != errno.EPIPE:
        click.echo(f"error: standard output: cannot write ({error.strerror or error})", err=True)
    sys.exit(1)


class OneLineErrors(click.Group):
    """Click's own usage errors (a bad option or argument) as one line too, like every other bad input."""

    def main(self, *args, **kwargs):
        _printable_anywhere()
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except OSError as e:
            if e.errno not in _OUTPUT_ERRNOS:
                raise
            _output_failed(e)
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {printable(e.format_message(), 1000)}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)


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
    signal.signal(signal.SIGTERM, _on_sigterm)
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
def run(config_file, overrides, out, results_root, device, force, seeds, jobs, quiet):
    """Train the arms described by CONFIG (a YAML file): the pair without and with BN, or its arms:.

    Writes config.yaml, environment.json, metrics.csv, summary.json, weights.npz,
    accuracy.png, diagnostics.csv, diagnostics.png and TensorBoard events into the
    run directory (the README's "What a run writes"): --out, or
    results/<experiment>/<run-id>/ with a `latest` link beside it.
    """
    from bn_lab import api
    from bn_lab.report import printed
    from bn_lab.store import rundir

    overrides = parse_overrides(overrides)
    config = _call(configs.load, config_file, overrides)
    origin = configs.origin(config_file, overrides)  # how the pre-run checks name it
    if seeds is not None:
        from bn_lab.report import sweep_report as report
        from bn_lab.sweeps import spec

        result = _call(
            api.run_seeds,
            config,
            _call(spec.parse_seeds, seeds),
            out=out,
            results_root=results_root,
            jobs=jobs,
            force=force,
            device=device,
            progress="none" if quiet else "auto",
            source=str(config_file),
            options=claims.RUN_COMMAND,
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
    run_dir = _call(
        api.run_config,
        config,
        out=out,
        results_root=results_root,
        device=device,
        force=force,
        progress="none" if quiet else "auto",
        origin=origin,
        options=claims.RUN_COMMAND,
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
    dry_run,
    quiet,
):
    """Run every cell of a grid of paired runs, then write the report.

    SWEEP is a sweep file (a base config, grid axes, seeds; see configs/sweep_lesson.yaml),
    or a base config with --grid axes. Every cell is one `bnlab run` into
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
    definition = _call(
        spec.load,
        sweep_file,
        grid,
        name=name,
        seeds=_call(spec.parse_seeds, seeds) if seeds is not None else None,
        overrides=parse_overrides(overrides),
    )
    if dry_run:
        click.echo(driver.describe(definition, results_root / definition.name))
        return
    result = _call(
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
        options=claims.SWEEP_COMMAND,
    )
    if not quiet:
        click.echo(result.report)
    if result.problem:
        click.echo(f"error: {result.problem}", err=True)
        sys.exit(1)


@main.command()
@click.argument("sweep_dir", metavar="SWEEP_DIR", type=click.Path(file_okay=False, path_type=Path))
@THRESHOLD_OPTION
@FIGURE_OPTION
def report(sweep_dir, threshold, figure):
    """Write the report of a sweep directory (results/<sweep-name>/), finished or not.

    Writes summary.csv (one row per cell), report.md (one row per grid point, over seeds),
    heatmap.png, curves.png and, for relu cells with a bad init and diagnostics on,
    mechanism.png into SWEEP_DIR, and prints the table.
    """
    from bn_lab.report import sweep_report as reports

    click.echo(_call(reports.write_report, sweep_dir, threshold=threshold, figure=figure))


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
    loaded = _call(datasets.load, section)
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


if __name__ == "__main__":
    main(prog_name="bnlab")
