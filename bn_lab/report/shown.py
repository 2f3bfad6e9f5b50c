"""What `bnlab show PATH` prints: a finished run's table as `bnlab run` printed it, a `--seeds`
directory's table over seeds, or a sweep's report table; it reads the files and writes none."""

from __future__ import annotations

from pathlib import Path

from bn_lab.report import printed, sweep_report
from bn_lab.store import rundir
from bn_lab.store.sweep_manifest import load_manifest


def shown(path: str | Path, wide: bool = False) -> str:
    """The table (a sweep's: report.md's whole one with wide); RunDirError, one line, for a path
    that is none of the three."""
    path = rundir.follow_latest(Path(path))
    if not path.is_dir():
        raise rundir.RunDirError(f"{path}: not a directory (a run, a --seeds directory or a sweep directory)")
    if (path / rundir.MANIFEST).is_file():
        manifest = load_manifest(path)
        if not manifest["axes"]:  # `bnlab run --seeds`: a sweep without axes
            return sweep_report.seeds_table(path)
        return sweep_report.report_table(path, wide=wide)
    if problem := rundir.run_problem(path):
        raise rundir.RunDirError(
            f"{path}: not a finished run ({problem}), nor a sweep directory (no {rundir.MANIFEST})"
        )
    return printed.report_text(rundir.load_summary(path), path)
