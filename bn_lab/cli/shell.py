"""The `bnlab` command's shell around the library: bad input as one line and exit status 2, a
path that cannot be written as one line and 1, Ctrl-C and SIGTERM as one line and 128 + the signal,
output that survives any terminal (encoding, a full disk, a closed pipe), and the options several
commands share."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from pathlib import Path

import click

from bn_lab.config import loading as configs
from bn_lab.config.user_text import printable
from bn_lab.config.yaml_io import ConfigError
from bn_lab.report import outcome
from bn_lab.runtime import DEVICES, interrupting  # runtime imports TensorFlow only in configure()

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


on_sigterm = interrupting(_terminated)


def _user_errors():
    """Exceptions that mean bad input (a config, a file, a device, a taken directory), not a bug."""
    from bn_lab.config.yaml_io import SweepError
    from bn_lab.data.datasets import DataError
    from bn_lab.runtime import CacheError, DeviceError
    from bn_lab.store.rundir import RunDirError

    return ConfigError, DataError, RunDirError, DeviceError, CacheError, SweepError


def call(function, *args, **kwargs):
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
        key, value = call(configs.parse_override, text)
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
WIDE_OPTION = click.option(
    "--wide",
    is_flag=True,
    help="Print the report's whole table (report.md's), not the one that fits 100 columns.",
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


def finish(code) -> None:
    """Ends the `bnlab` process with SystemExit's `code`. Where TensorFlow was imported, without the
    interpreter's teardown, which is slow after a run (docs/performance.md) and does
    nothing a finished command needs once atexit's handlers (logging, Ray's shutdown,
    multiprocessing's) have run and the streams are flushed. Where one of Python's threads still
    runs (an executor's), the ordinary exit, which waits for it."""
    import atexit
    import threading

    running = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if "tensorflow" not in sys.modules or running:
        sys.exit(code)
    if code is None or isinstance(code, int):
        status = code or 0
    else:  # sys.exit("message"): Python prints it and exits 1
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that left: nothing more to say
            stream.flush()
    os._exit(status)
