"""A sweep's manifest (sweep.json): read and checked, and whether a directory may hold this sweep.

A sweep directory is bn_lab's when bn_lab created it or its sweep.json is a manifest bn_lab wrote;
a sweep resumes only into its own directory with its own grid and seeds.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from bn_lab import claims, files, rundir
from bn_lab.config import FIELDS, name_problem, shown
from bn_lab.rundir import MANIFEST, SUMMARY
from bn_lab.sweeps.spec import Axis, SweepError


def load_manifest(sweep_dir: str | Path) -> dict:
    """A sweep's sweep.json, checked: a damaged one is one line, not a KeyError later."""
    path = Path(sweep_dir) / MANIFEST
    try:
        is_directory = stat.S_ISDIR(os.stat(sweep_dir).st_mode)
    except FileNotFoundError:
        raise SweepError(f"{sweep_dir}: no such directory") from None
    except OSError as e:  # a symbolic link loop, no permission
        raise SweepError(f"{sweep_dir}: cannot read ({e.strerror or e})") from None
    if not is_directory:
        raise SweepError(f"{sweep_dir}: not a directory")
    try:
        manifest = files.read_json(path)
    except FileNotFoundError:
        raise SweepError(f"{sweep_dir}: not a sweep directory (no {MANIFEST}; `bnlab sweep` writes it)") from None
    except (OSError, ValueError) as e:
        raise SweepError(f"{path}: unreadable ({e})") from None
    problem = manifest_problem(manifest)
    if problem:
        raise SweepError(f"{path}: not a bn_lab sweep manifest ({problem}); rerun `bnlab sweep` to rewrite it")
    return manifest


# What a report reads of sweep.json: checked first, so a damaged file is one line, not a KeyError.
_CELL_KEYS = {"name": str, "point": str, "seed": int, "indices": list, "grid": dict, "config_digest": str}
_AXIS_KEYS = {"key": str, "values": list}


def manifest_problem(manifest) -> str | None:
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    for key, kind in (("name", str), ("axes", list), ("cells", list), ("seeds", list)):
        if not isinstance(manifest.get(key), kind):
            return f"'{key}' must be a {kind.__name__}"
    for i, axis in enumerate(manifest["axes"]):
        if problem := _axis_problem(axis):
            return f"axes[{i}] {problem}"
    for i, cell in enumerate(manifest["cells"]):
        if not isinstance(cell, dict) or any(not isinstance(cell.get(k), t) for k, t in _CELL_KEYS.items()):
            return f"cells[{i}] needs {', '.join(_CELL_KEYS)}"
        if len(cell["indices"]) != len(manifest["axes"]) or not all(
            isinstance(j, int) and 0 <= j < len(a["values"]) for j, a in zip(cell["indices"], manifest["axes"])
        ):
            return f"cells[{i}].indices do not fit the axes"
        if any(not isinstance(cell["grid"].get(a["key"]), str) for a in manifest["axes"]):
            return f"cells[{i}].grid must give every axis's value"
        if name_problem(cell["name"]):
            return f"cells[{i}].name is not a directory name"
    if not isinstance(manifest.get("base"), str):  # the report's heading names the base config
        return "'base' must be a str"
    if not isinstance(manifest.get("set") or {}, dict):
        return "'set' must be an object"
    return None


def _axis_problem(axis) -> str | None:
    shaped = isinstance(axis, dict) and "labels" in axis
    if not shaped or any(not isinstance(axis.get(k), t) for k, t in _AXIS_KEYS.items()):
        return f"needs {', '.join(_AXIS_KEYS)}, labels"
    if axis["key"] not in FIELDS:
        return f"key {shown(axis['key'])} is not a config key"
    labels = axis["labels"]
    if labels is not None and not (
        isinstance(labels, list) and len(labels) == len(axis["values"]) and all(isinstance(n, str) for n in labels)
    ):
        return "labels must be null or list one name per value"
    try:  # the figures label rows and columns with the values' pieces of cell names
        named = Axis.from_record(axis)
        for j in range(len(named.values)):
            named.fragment(j)
    except SweepError:
        return "has a value no cell name can hold"
    return None


# Entries a sweep directory holds before its manifest is written (the lock) besides hidden staging.
_BEFORE_THE_MANIFEST = {rundir.SWEEP_LOCK}


def _identity(manifest: dict) -> tuple:
    """What makes two manifests the same sweep: its cells (name and config) and its axes and seeds."""
    cells = tuple((c["name"], c["config_digest"]) for c in manifest["cells"])
    axes = tuple((a["key"], json.dumps(a["values"])) for a in manifest["axes"])
    return cells, axes, tuple(manifest["seeds"])


def check_place(
    sweep_dir: Path, manifest: dict, force: bool, options: claims.CallerOptions = claims.SWEEP_COMMAND
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


def claimed(sweep_dir: Path, manifest: dict, force: bool, options: claims.CallerOptions = claims.SWEEP_COMMAND):
    """claims.sweep_claim with this sweep's check of the place: a context manager."""
    return claims.sweep_claim(sweep_dir, lambda place: check_place(place, manifest, force, options), options)


__all__ = ["check_place", "claimed", "load_manifest", "manifest_problem"]
