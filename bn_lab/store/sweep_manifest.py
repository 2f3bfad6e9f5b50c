"""What a sweep directory's sweep.json holds, read and checked: its name, axes, cells and seeds.
Writing it, and whether a directory may hold a sweep, is bn_lab.sweeps'; the report reads it here.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from bn_lab.config.fields import FIELDS
from bn_lab.config.names import name_problem
from bn_lab.config.user_text import printable
from bn_lab.config.yaml_io import SweepError, shown
from bn_lab.disk import files
from bn_lab.store.rundir import MANIFEST

# How much of a value --dry-run, the report and sweep.json's cells show.
DISPLAY_LIMIT = 80


@dataclass(frozen=True)
class Axis:
    """One grid axis: a config key and its values, optionally named ({good: 0.05, bad: 5.0})."""

    key: str
    values: tuple  # validated config values, in the order given
    labels: tuple | None = None  # the names of named values

    @classmethod
    def from_record(cls, recorded: dict) -> Axis:
        """The axis as sweep.json records it ({"key", "values", "labels"})."""
        labels = recorded["labels"]
        return cls(recorded["key"], tuple(recorded["values"]), tuple(labels) if labels else None)

    def fragment(self, i: int) -> str:
        """This value's piece of a cell name: relu, lr2, lr1e-6, badinit, steps200.

        Exact, never rounded or rewritten: two different values never share a name, and a
        value that cannot be written in a name is an error asking to name the values.
        """
        value, leaf = self.values[i], self.key.rsplit(".", 1)[-1]
        if self.labels:
            text = self.labels[i] + self.key.split(".", 1)[0]
        elif FIELDS[self.key].choices is not None:
            text = str(value)
        elif self.key == "optimizer.learning_rate":
            text = f"lr{_name_number(value)}"
        elif isinstance(value, bool):
            text = leaf if value else f"no_{leaf}"
        elif isinstance(value, (int, float)):
            text = f"{leaf}{_name_number(value)}"
        elif isinstance(value, list):
            text = leaf + "x".join(_name_number(v) for v in value)
        else:
            text = f"{leaf}{'none' if value is None else value}"
        if problem := name_problem(text):
            if self.labels:  # only its length can be wrong
                raise SweepError(f"{self.key}: value name {shown(self.labels[i])}: cell name {problem}")
            raise SweepError(
                f"{self.key}: value {show(value)} cannot be part of a cell name; name the values, "
                f"e.g. {self.key}: {{a: ..., b: ...}}"
            )
        return text

    def display(self, i: int) -> str:
        """This value for people: `relu`, `2`, `bad (5)`; one bounded line, a terminal's control
        characters escaped (a value is any string a config allows: a path, a description)."""
        text = printable(show(self.values[i]), DISPLAY_LIMIT)
        return f"{self.labels[i]} ({text})" if self.labels else text


def _name_number(value) -> str:
    """A number as a cell name writes it: exact (0.01, 2, 1e-06 -> 1e-6, 1e+06 -> 1e6), no '+'."""
    text = show(value)
    return re.sub(r"e([+-]?)0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), text)


def show(value) -> str:
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


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
