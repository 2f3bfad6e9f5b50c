"""bn_lab from Python: what the `bnlab` commands do, as functions a notebook or a script calls.

    import bn_lab
    run = bn_lab.run("configs/relu_lr2_badinit.yaml", seed=1, **{"train.steps": 5000})
    run.summary["variants"]["with_bn"]["late_val_accuracy"]
    run.plot()                      # a matplotlib Figure: shows inline in Jupyter
    run.metrics_frame()             # pandas, if installed; run.metrics is plain columns
    run.diagnostics                 # diagnostics.csv as columns; run.diagnostics_plot() draws them
    run.weights("with_bn")          # the trained network's arrays, from weights.npz
    bn_lab.load(run.path)           # the same Run again, from disk
    grid = bn_lab.sweep("configs/sweep_smoke.yaml", jobs=2)
    bn_lab.load_sweep(grid.path).runs["relu_badinit_seed0"].summary

The CLI is a thin shell over these; they validate the config and claim the output directory
before anything slow (TensorFlow) starts.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bn_lab import runtime
from bn_lab.config import bundled
from bn_lab.config import loading as configs
from bn_lab.config.yaml_io import ConfigError, shown
from bn_lab.report.finished import Run, SweepRun
from bn_lab.store import callers, rundir
from bn_lab.sweeps import seeds as several_seeds
from bn_lab.sweeps.executors.local import refuse_in_a_worker_start
from bn_lab.training import launch

PROGRESS = ("auto", "bar", "lines", "none")


class IncompleteSweep(RuntimeError):
    """Some cells of a sweep (or seeds of `run(seeds=...)`) did not complete, as `bnlab` exits 1 for
    them; `.sweep` is the SweepRun of what did (its report is written), and running the same call
    again retries the rest."""

    def __init__(self, message: str, sweep: SweepRun):
        super().__init__(message)
        self.sweep = sweep


# --- the arguments of the API, checked as the CLI's options are: one line naming each ----------


def _worded_for_the_api(function):
    """The library's messages name bnlab's options (--set, --device); an API call's errors name
    the call's parameters instead (overrides, device): one rewording, store.callers'."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ConfigError, runtime.DeviceError) as e:
            worded = callers.for_the_api(str(e))
            if worded == str(e):
                raise
            raise type(e)(worded) from None

    return call


def _refused(name: str, value, wanted: str) -> configs.ConfigError:
    return configs.ConfigError(f"{name} must be {wanted}, got {type(value).__name__} {configs.shown(value)}")


def _path(name: str, value, optional: bool = True) -> Path | None:
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value):
        raise _refused(name, value, "a path (a str or pathlib.Path)")
    return Path(value)


def _count(name: str, value, minimum: int = 1) -> int:
    value = configs.plain(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _refused(name, value, f"an integer >= {minimum}")
    return value


def _flag(name: str, value) -> bool:
    value = configs.plain(value)
    if not isinstance(value, bool):
        raise _refused(name, value, "True or False")
    return value


def _mapping(name: str, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _refused(name, value, "a mapping of config keys to values, e.g. {'train.steps': 500}")
    return dict(value)


def _seeds(value) -> list[int]:
    """A list of seeds, each checked as --seeds' are (a string is no list: "12" was seeds 1 and 2)."""
    from bn_lab.sweeps import spec

    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise _refused("seeds", value, "a list of seeds, e.g. seeds=[0, 1, 2]")
    return spec.check_seeds([configs.plain(s) for s in value], "seeds")


def _strings(name: str, value) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _refused(name, value, 'a list of strings, e.g. ["model.activation=relu,sigmoid"]')
    value = list(value)
    if not all(isinstance(v, str) for v in value):
        raise _refused(name, value, 'a list of strings, e.g. ["model.activation=relu,sigmoid"]')
    return value


def _progress(progress: str) -> str:
    """ "auto" in a notebook is its widget bar (tqdm.auto); elsewhere a bar on a terminal, lines in a log."""
    if not isinstance(progress, str) or progress not in PROGRESS:
        raise ConfigError(f"progress {shown(progress)}: unknown; allowed: {', '.join(PROGRESS)}")
    return "bar" if progress == "auto" and "ipykernel" in sys.modules else progress


@_worded_for_the_api
def resolve_config(config: str | Path | Mapping, seed: int | None = None, overrides: Mapping | None = None) -> dict:
    """A validated config from a YAML path or a mapping (nested or dotted keys), with overrides applied."""
    overrides = dict(overrides or {})
    if seed is not None:
        overrides["seed"] = seed
    if isinstance(config, Mapping):
        tree = configs.unflatten(configs.flatten(dict(config)))
        return configs.validate(configs.apply_overrides(tree, overrides, "overrides"), "config")
    if not isinstance(config, (str, os.PathLike)):
        raise ConfigError(
            f"config must be a YAML file's path or a mapping of keys to values, got {type(config).__name__} "
            f"{shown(config)}"
        )
    return configs.load(bundled.path(config), overrides)  # a path, or a bundled config's name


@_worded_for_the_api
def load(path: str | Path) -> Run:
    """The Run of a finished run directory (or of the `latest` pointer beside runs)."""
    return Run(rundir.follow_latest(_path("path", path, optional=False)))


@_worded_for_the_api
def load_sweep(path: str | Path) -> SweepRun:
    return SweepRun(rundir.follow_latest(_path("path", path, optional=False)))


@_worded_for_the_api
def run(
    config: str | Path | Mapping,
    seed: int | None = None,
    *,
    seeds: list[int] | None = None,
    out: str | Path | None = None,
    results: str | Path = "results",
    force: bool = False,
    jobs: int = 1,
    device: str = "auto",
    progress: str = "auto",
    overrides: Mapping[str, Any] | None = None,
    **dotted: Any,
) -> Run | SweepRun:
    """Trains the arms of `config` (a YAML path or a mapping; the lesson's pair unless it lists
    `arms:`) and returns the finished Run.

    Overrides come as a mapping or as keyword arguments with dotted keys:
    `bn_lab.run("configs/smoke.yaml", seed=1, **{"train.steps": 500})`. With `seeds=[0, 1, 2]`
    it trains one pair per seed and returns a SweepRun. `out` is the exact directory; by
    default a new one under results/<experiment>/.
    """
    refuse_in_a_worker_start()
    out, results = _path("out", out), _path("results", results, optional=False)
    force, jobs, progress = _flag("force", force), _count("jobs", jobs), _progress(progress)
    seeds = None if seeds is None else _seeds(seeds)
    resolved = resolve_config(config, seed, {**_mapping("overrides", overrides), **dotted})
    source = str(config) if not isinstance(config, Mapping) else "(a mapping)"
    if seeds is not None:
        done = several_seeds.run_seeds(
            resolved,
            seeds,
            out=out,
            results_root=results,
            jobs=jobs,
            force=force,
            device=device,
            progress=progress,
            source=source,
        )
        return _finished(done)
    if jobs != 1:
        raise configs.ConfigError("jobs is for seeds=[...]: one run trains in this process")
    path = launch.run_config(resolved, out=out, results_root=results, force=force, device=device, progress=progress)
    return Run(path)


def _finished(done) -> SweepRun:
    """The SweepRun of a sweep that ran; IncompleteSweep if some of its cells did not complete."""
    found = SweepRun(done.sweep_dir)
    if done.problem:
        raise IncompleteSweep(done.problem, found)
    return found


@_worded_for_the_api
def sweep(
    sweep_file: str | Path,
    grid: list[str] | tuple = (),
    *,
    seeds: list[int] | None = None,
    name: str | None = None,
    results: str | Path = "results",
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    device: str = "auto",
    force: bool = False,
    threshold: float = 0.9,
    figure: str = "late",
    progress: str = "auto",
    overrides: Mapping[str, Any] | None = None,
) -> SweepRun:
    """Runs a sweep file (or a base config with `grid=["key=v1,v2", ...]`); returns the SweepRun.
    IncompleteSweep if some cells did not complete (its `.sweep` holds the others)."""
    from bn_lab.sweeps import driver, spec

    refuse_in_a_worker_start()
    sweep_file, results = _path("sweep_file", sweep_file, optional=False), _path("results", results, optional=False)
    grid, seeds = _strings("grid", grid), None if seeds is None else _seeds(seeds)
    force, jobs, progress = _flag("force", force), _count("jobs", jobs), _progress(progress)
    if ray_address is not None and not isinstance(ray_address, str):
        raise _refused("ray_address", ray_address, "a str (host:port) or None")
    sweep_file = bundled.path(sweep_file)  # a sweep file, or with grid= a base config: either may be bundled
    definition = spec.load(sweep_file, grid, name=name, seeds=seeds, overrides=_mapping("overrides", overrides))
    done = driver.run_sweep(
        definition,
        results,
        jobs=jobs,
        executor=executor,
        ray_address=ray_address,
        device=device,
        force=force,
        progress=progress,
        threshold=threshold,
        figure=figure,
        options=callers.API_SWEEP,
    )
    return _finished(done)
