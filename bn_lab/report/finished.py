"""Finished runs and sweeps read back from their files, lazily: what `bn_lab.load()` and
`bn_lab.load_sweep()` return (and `bn_lab.run()`, `bn_lab.sweep()`). Reading only: the report
of a sweep is written again on request, nothing trains."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from bn_lab.config import arms
from bn_lab.config.yaml_io import read_yaml
from bn_lab.disk import files
from bn_lab.store import rundir, schema, sweep_manifest


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
        return read_yaml(self.path / rundir.CONFIG)  # as every config is read: a FIFO there never blocks

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
        try:
            with files.open_regular(path) as f, np.load(f) as saved:
                prefix = f"{variant}/"
                found = {name[len(prefix) :]: saved[name] for name in saved.files if name.startswith(prefix)}
        except ValueError as e:  # not a regular file, not an npz: the message names the file
            raise ValueError(f"{path}: {e}") from None
        if not found:
            raise ValueError(
                f"{path}: holds no {variant} network (this run trained {', '.join(self.summary['variants'])})"
            )
        return found

    def diagnostics_plot(self):
        """diagnostics.png's figure (what BN does inside the network) as a matplotlib Figure."""
        from bn_lab.report import inside_figures, printed

        columns = self.diagnostics
        if not columns["step"]:
            raise ValueError(f"{self.path}: no diagnostics (the run had diagnostics.enabled: false)")
        hidden = max(layer for layer in columns["layer"] if layer != "all")
        return inside_figures.diagnostics_figure(
            _rows(columns),
            hidden,
            printed.title(self.config),
            self.config["diagnostics"]["unit"],
            self._diverged_at,
            styles=arms.recorded(self.summary),
        )

    def metrics_frame(self):
        """The metrics as a pandas DataFrame (pandas is optional: pip install 'bn_lab[frames]')."""
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "Run.metrics_frame needs pandas (pip install 'bn_lab[frames]'); Run.metrics has the same columns"
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
        from bn_lab.report import sweep_results, sweep_table

        sweep_results.check_options(threshold, figure)
        return sweep_table.summary_rows(sweep_results.collect(self.path, figure), threshold)

    def report(self, threshold: float = 0.9, figure: str = "late") -> str:
        """Writes the report files again and returns the printed table."""
        from bn_lab.report import sweep_report as report

        return report.write_report(self.path, threshold=threshold, figure=figure)

    def __repr__(self) -> str:
        return f"SweepRun({str(self.path)!r}: {len(self.runs)} of {len(self.manifest['cells'])} cells finished)"
