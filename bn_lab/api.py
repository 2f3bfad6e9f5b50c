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

import os
import sys
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from bn_lab.config import arms
from bn_lab.config import loading as configs
from bn_lab.config.yaml_io import ConfigError, shown
from bn_lab.disk import files
from bn_lab.store import claims, rundir, schema, sweep_manifest
from bn_lab.sweeps.executors.local import refuse_in_a_worker_start
from bn_lab.training import preflight

PROGRESS = ("auto", "bar", "lines", "none")


class IncompleteSweep(RuntimeError):
    """Some cells of a sweep (or seeds of `run(seeds=...)`) did not complete, as `bnlab` exits 1 for
    them; `.sweep` is the SweepRun of what did (its report is written), and running the same call
    again retries the rest."""

    def __init__(self, message: str, sweep: SweepRun):
        super().__init__(message)
        self.sweep = sweep


# --- the arguments of the API, checked as the CLI's options are: one line naming each ----------


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
    return configs.load(config, overrides)


def _read_columns(path: Path, columns: list[str], convert: dict) -> dict[str, list]:
    """A CSV file of a run as columns; a value goes through its column's converter, an empty one is None."""
    rows = schema.read_table(path, columns)
    return {c: [convert[c](r[c]) if c in convert and r[c] != "" else (r[c] or None) for r in rows] for c in columns}


def _rows(columns: dict[str, list]) -> list[dict]:
    """Columns back as rows (dicts), as the figures take them."""
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


class Run:
    """A finished run directory, read lazily from its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        problem = rundir.run_problem(self.path)
        if problem is None and not rundir.written_by_bn_lab(self.path):
            problem = f"no {rundir.ENVIRONMENT} that bn_lab wrote"
        if problem:
            raise rundir.RunDirError(f"{self.path}: not a finished bn_lab run ({problem})")

    @cached_property
    def summary(self) -> dict:
        return rundir.load_summary(self.path)

    @cached_property
    def config(self) -> dict:
        return configs.read_yaml(self.path / rundir.CONFIG)  # as every config is read: a FIFO there never blocks

    @cached_property
    def metrics(self) -> dict[str, list]:
        """metrics.csv as columns: {"variant": [...], "step": [...], "split": [...], "loss": [...], ...}."""
        numbers = {"step": int, "loss": float, "accuracy": float, "top_class_share": float}
        return _read_columns(self.path / rundir.METRICS, schema.METRICS_COLUMNS, numbers)

    @cached_property
    def diagnostics(self) -> dict[str, list]:
        """diagnostics.csv as columns: {"variant", "step", "layer", "quantity", "value"} (empty without it).

        layer is an int (hidden layers count from 1), or "all" for the loss-landscape probe."""
        path = self.path / rundir.DIAGNOSTICS
        if not path.is_file():
            return {column: [] for column in schema.DIAGNOSTICS_COLUMNS}
        layer = lambda text: int(text) if text.isdigit() else text  # noqa: E731
        return _read_columns(path, schema.DIAGNOSTICS_COLUMNS, {"step": int, "layer": layer, "value": float})

    @property
    def _diverged_at(self) -> dict:
        return {v: r["diverged_at_step"] for v, r in self.summary["variants"].items()}

    def weights(self, variant: str | None = None) -> dict:
        """One arm's weights and population statistics after training, from weights.npz:
        {"layer1/kernel": array, ..., "layer1/population_mean": ..., "layer4/bias": ...}.
        variant: the arm's name; default: the run's last arm (the lesson's: with_bn)."""
        import numpy as np

        names = list(self.summary["variants"])
        variant = names[-1] if variant is None else variant
        if variant not in names:
            raise ValueError(f"variant must be one of {', '.join(names)}, got {variant!r}")
        path = self.path / rundir.WEIGHTS
        if not path.exists():
            raise FileNotFoundError(f"{path}: not written (runs of bn_lab before weights.npz existed)")
        with files.open_regular(path) as f, np.load(f) as saved:
            prefix = f"{variant}/"
            found = {name[len(prefix) :]: saved[name] for name in saved.files if name.startswith(prefix)}
        if not found:
            raise ValueError(
                f"{path}: holds no {variant} network (this run trained {', '.join(self.summary['variants'])})"
            )
        return found

    def diagnostics_plot(self):
        """diagnostics.png's figure (what BN does inside the network) as a matplotlib Figure."""
        from bn_lab.report import plots, printed

        columns = self.diagnostics
        if not columns["step"]:
            raise ValueError(f"{self.path}: no diagnostics (the run had diagnostics.enabled: false)")
        hidden = max(layer for layer in columns["layer"] if layer != "all")
        return plots.diagnostics_figure(
            _rows(columns),
            hidden,
            printed.title(self.config),
            self.config["diagnostics"]["unit"],
            self._diverged_at,
            styles=arms.recorded(self.summary),
        )

    def metrics_frame(self):
        """The metrics as a pandas DataFrame (pandas is optional: pip install pandas)."""
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "Run.metrics_frame needs pandas (pip install pandas); Run.metrics has the same columns"
            ) from None
        return pandas.DataFrame(self.metrics)

    def rows(self) -> list[dict]:
        return _rows(self.metrics)

    def plot(self):
        """Validation accuracy vs step of both networks (and BN with exact statistics): a matplotlib Figure."""
        from bn_lab.report import plots, printed

        return plots.accuracy_figure(
            self.rows(), printed.title(self.config), self._diverged_at, styles=arms.recorded(self.summary)
        )

    def __repr__(self) -> str:
        parts = []
        for variant, r in self.summary["variants"].items():
            late = (r.get("late_val_accuracy") or {}).get("mean")
            parts.append(f"{variant} {r.get('outcome', '?')}" + ("" if late is None else f" {late:.4f}"))
        return f"Run({str(self.path)!r}: seed {self.summary.get('seed', '?')}, " + ", ".join(parts) + ")"


def load(path: str | Path) -> Run:
    """The Run of a finished run directory (or of the `latest` pointer beside runs)."""
    return Run(rundir.follow_latest(_path("path", path, optional=False)))


def run_config(
    config: dict,
    *,
    out: str | Path | None = None,
    results_root: str | Path = "results",
    force: bool = False,
    device: str = "auto",
    progress: str = "auto",
    command_line: str | None = None,
    origin: str = "config",
    options: claims.CallerOptions = claims.API_RUN,
) -> Path:
    """Trains the arms of a resolved config into `out`, or a new results/<experiment>/<run-id>/; returns it.

    --force (force=True) replaces only an existing bn_lab run at `out`, never other files.
    Without `out`, the new run directory gets a `latest` link beside it. origin: how a problem
    found before training names the config (its file); options: how messages name the caller's
    options (the API's by default; `bnlab run` gives its own).
    """
    preflight.check([(config, origin)], device)
    if out is not None:
        claim = claims.claim(out, force, options=options)
    else:
        claim = claims.claim_new(results_root, config["experiment"], config["seed"])
    from bn_lab.training import experiment

    with claim:
        experiment.run_experiment(config, claim.staging, device=device, progress=progress, command_line=command_line)
    if out is None:
        rundir.point_latest(claim.run_dir)
    return claim.run_dir


# The seeds a --seeds directory's name lists, at most (beyond, "-and-N-more"): a name has 255 bytes.
NAMED_SEEDS = 6


def seeds_directory_name(seeds: list[int]) -> str:
    """<time>-seeds0-4 for a range of seeds, <time>-seeds0_3_7 otherwise, <time>-seeds0_3_7_9_12_20-and-94-more
    for many (rundir.RUN_ID: what `latest` may name)."""
    ordered = sorted(seeds)
    contiguous = ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 1
    if contiguous:
        return f"{claims.timestamp()}-seeds{ordered[0]}-{ordered[-1]}"
    more = f"-and-{len(seeds) - NAMED_SEEDS}-more" if len(seeds) > NAMED_SEEDS else ""
    return f"{claims.timestamp()}-seeds" + "_".join(map(str, seeds[:NAMED_SEEDS])) + more


def run_seeds(
    config: dict,
    seeds: list[int],
    *,
    out: str | Path | None = None,
    results_root: str | Path = "results",
    jobs: int = 1,
    force: bool = False,
    device: str = "auto",
    progress: str = "auto",
    source: str = "",
    options: claims.CallerOptions = claims.API_RUN,
):
    """The pair of a resolved config for each seed: a sweep without axes in `out`, or a new
    results/<experiment>/<time>-seeds<...>/ (with a `latest` link beside it); one cell per seed,
    each a complete run directory. Rerunning with the same `out` resumes. Returns the SweepResult.
    """
    from bn_lab.sweeps import driver, spec

    spec.of_seeds(config, seeds, name=config["experiment"], source=source)  # bad seeds fail before any directory
    if out is not None:
        claims.check_location(Path(out), options)
        sweep_dir = Path(out)
    else:
        parent = Path(results_root) / config["experiment"]
        sweep_dir = claims.new_directory(parent, seeds_directory_name(seeds), options)
    definition = spec.of_seeds(config, seeds, name=sweep_dir.name, source=source)
    result = driver.run_sweep(
        definition, sweep_dir=sweep_dir, jobs=jobs, force=force, device=device, progress=progress, options=options
    )
    if out is None:
        rundir.point_latest(sweep_dir)
    return result


class SweepRun:
    """A sweep directory (`bnlab sweep`, or `run --seeds`), read lazily: its runs and its report."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = sweep_manifest.load_manifest(self.path)

    @property
    def runs(self) -> dict[str, Run]:
        """The finished cells, by name (e.g. "relu_lr2_badinit_seed1")."""
        return {
            c["name"]: Run(self.path / c["name"])
            for c in self.manifest["cells"]
            if rundir.is_complete(self.path / c["name"])
        }

    def table(self, figure: str = "late", threshold: float = 0.9) -> list[dict]:
        """One row per finished cell, as summary.csv has them (successes: `figure` >= threshold)."""
        from bn_lab.report import sweep_report as report

        report.check_options(threshold, figure)
        return report.summary_rows(report.collect(self.path, figure), threshold)

    def report(self, threshold: float = 0.9, figure: str = "late") -> str:
        """Writes the report files again and returns the printed table."""
        from bn_lab.report import sweep_report as report

        return report.write_report(self.path, threshold=threshold, figure=figure)

    def __repr__(self) -> str:
        return f"SweepRun({str(self.path)!r}: {len(self.runs)} of {len(self.manifest['cells'])} cells finished)"


def load_sweep(path: str | Path) -> SweepRun:
    return SweepRun(rundir.follow_latest(_path("path", path, optional=False)))


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
        done = run_seeds(
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
    path = run_config(resolved, out=out, results_root=results, force=force, device=device, progress=progress)
    return Run(path)


def _finished(done) -> SweepRun:
    """The SweepRun of a sweep that ran; IncompleteSweep if some of its cells did not complete."""
    found = SweepRun(done.sweep_dir)
    if done.problem:
        raise IncompleteSweep(done.problem, found)
    return found


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
        options=claims.API_SWEEP,
    )
    return _finished(done)
