"""A sweep's manifest (sweep.json): read and checked, and whether a directory may hold this sweep.

A sweep directory is bn_lab's when bn_lab created it or its sweep.json is a manifest bn_lab wrote;
a sweep resumes only into its own directory with its own grid and seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

from bn_lab.config.yaml_io import SweepError, shown
from bn_lab.store import callers, claims, rundir
from bn_lab.store.rundir import MANIFEST, SUMMARY
from bn_lab.store.sweep_manifest import load_manifest

# Entries a sweep directory holds before its manifest is written (the lock) besides hidden staging.
_BEFORE_THE_MANIFEST = {rundir.SWEEP_LOCK}


def _identity(manifest: dict) -> tuple:
    """What makes two manifests the same sweep: its cells (name and config) and its axes and seeds."""
    cells = tuple((c["name"], c["config_digest"]) for c in manifest["cells"])
    axes = tuple((a["key"], json.dumps(a["values"])) for a in manifest["axes"])
    return cells, axes, tuple(manifest["seeds"])


def check_place(
    sweep_dir: Path, manifest: dict, force: bool, options: callers.CallerOptions = callers.SWEEP_COMMAND
) -> None:
    """Refuses a directory this sweep may not write: not a directory, another's files, a run, or
    a bn_lab sweep of another grid or seeds (force: its manifest is replaced; no file is deleted)."""
    if not sweep_dir.exists() and not sweep_dir.is_symlink():
        return
    if not sweep_dir.is_dir() or sweep_dir.is_symlink():
        raise SweepError(f"{sweep_dir}: exists and is not a directory")
    names = sorted(
        p.name for p in sweep_dir.iterdir() if p.name not in _BEFORE_THE_MANIFEST and not rundir.is_staging(p)
    )
    if not names:
        return
    if rundir.written_by_bn_lab(sweep_dir) or (sweep_dir / SUMMARY).exists():
        raise SweepError(f"{sweep_dir}: holds a run, not a sweep; {options.write_elsewhere}")
    cells = {c["name"] for c in manifest["cells"]}
    if MANIFEST not in names and all(n in cells and rundir.written_by_bn_lab(sweep_dir / n) for n in names):
        return  # recognisably this sweep's: only bn_lab runs of its cells (its sweep.json lost or not yet written)
    if MANIFEST not in names:
        raise SweepError(
            f"{sweep_dir}: not a bn_lab sweep (no {MANIFEST}; it holds {rundir.listed(names)}); "
            f"{options.write_elsewhere}"
        )
    try:
        old = load_manifest(sweep_dir)
    except SweepError as e:
        raise SweepError(f"{e}; it is not replaced: {options.write_elsewhere}") from None
    if _identity(old) == _identity(manifest) or force:
        return
    before, now = dict(_identity(old)[0]), dict(_identity(manifest)[0])
    differences = []
    if old["seeds"] != manifest["seeds"]:
        differences.append(f"seeds {shown(old['seeds'], 40)} -> {shown(manifest['seeds'], 40)}")
    if gone := [n for n in before if n not in now]:
        differences.append(f"cells only in it: {rundir.listed(gone)}")
    if new := [n for n in now if n not in before]:
        differences.append(f"cells only in this one: {rundir.listed(new)}")
    if changed := [n for n in now if n in before and before[n] != now[n]]:
        differences.append(f"cells with another config: {rundir.listed(changed)}")
        differences += _set_differences(old, manifest)
    if not differences:
        differences.append("its axes differ")
    command = old.get("command_line")
    again = (
        f"rerun it as it was started ({shown(command, 120)})"
        if isinstance(command, str)
        else "rerun it as it was started"
    )
    raise SweepError(
        f"{sweep_dir / MANIFEST}: this sweep was started with another grid ({'; '.join(differences)}); "
        f"{again}, use {options.force} to replace its manifest, or {options.write_elsewhere}"
    )


def _set_differences(old: dict, new: dict) -> list[str]:
    """What changed in the base config's path and the keys set on every cell (what a manifest records)."""
    differences = [] if old["base"] == new["base"] else [f"base {shown(old['base'], 60)} -> {shown(new['base'], 60)}"]
    before, now = old.get("set") or {}, new.get("set") or {}
    for key in list(now) + [k for k in before if k not in now]:
        if before.get(key) != now.get(key):
            differences.append(
                f"{key}: {shown(before.get(key, '(not set)'), 40)} -> {shown(now.get(key, '(not set)'), 40)}"
            )
    return differences[:4]


def claimed(sweep_dir: Path, manifest: dict, force: bool, options: callers.CallerOptions = callers.SWEEP_COMMAND):
    """claims.sweep_claim with this sweep's check of the place: a context manager."""
    return claims.sweep_claim(sweep_dir, lambda place: check_place(place, manifest, force, options), options)
