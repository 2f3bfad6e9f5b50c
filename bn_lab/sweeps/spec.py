"""A sweep's definition: a sweep file or a base config with `--grid` axes -> validated cells.

A sweep is a base config, a few grid axes (config key -> values) and seeds. The whole grid
is expanded and every cell's config validated here, before anything trains. Pure: no
TensorFlow, nothing written.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bn_lab.config import bundled
from bn_lab.config import loading as configs
from bn_lab.config.fields import MAX_SEED
from bn_lab.config.names import name_problem
from bn_lab.config.yaml_io import SweepError, parse_yaml, read_yaml, shown
from bn_lab.store.sweep_manifest import Axis, show

SWEEP_KEYS = ("name", "base", "set", "grid", "seeds")
# Each cell is a directory and a paired run of its own: the lesson's grid is 60; more than this is a typo.
MAX_CELLS = 10_000
# Keys a grid or `set:` may not touch: the sweep names its cells and owns the seeds.
RESERVED = {"experiment": "cells are named by the sweep", "seed": "list seeds under `seeds:` (or --seeds)"}


# --- definition --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    name: str  # relu_lr2_badinit_seed1: results/<sweep>/<name>/
    point: str  # relu_lr2_badinit: the grid point, shared by its seeds; the config's `experiment`
    seed: int
    indices: tuple  # index of this cell's value on each axis
    config: dict = field(compare=False, repr=False)  # the resolved config


@dataclass
class Sweep:
    name: str
    source: str  # the sweep file, or the base config of an ad-hoc sweep
    base: str  # the base config
    settings: dict  # dotted key -> value applied to every cell (`set:` and --set)
    axes: list[Axis]
    seeds: list[int]
    cells: list[Cell]

    def grid_values(self, cell: Cell) -> dict:
        return {a.key: a.display(i) for a, i in zip(self.axes, cell.indices)}

    def manifest(self) -> dict:
        """What sweep.json holds: enough for `bnlab report` to know every cell, finished or not."""
        return {
            "name": self.name,
            "source": self.source,
            "base": self.base,
            "set": self.settings,
            "axes": [
                {"key": a.key, "values": list(a.values), "labels": list(a.labels) if a.labels else None}
                for a in self.axes
            ],
            "seeds": self.seeds,
            "cells": [
                {
                    "name": c.name,
                    "point": c.point,
                    "seed": c.seed,
                    "indices": list(c.indices),
                    "grid": self.grid_values(c),
                    "config_digest": configs.digest(c.config),
                }
                for c in self.cells
            ],
        }


def _is_sweep(tree: dict) -> bool:
    """A sweep file has `grid:` (and `base:`); a run config has neither."""
    return "grid" in tree or "base" in tree


def load(
    path: str | Path,
    grid: tuple[str, ...] | list[str] = (),
    *,
    name: str | None = None,
    seeds: list[int] | None = None,
    overrides: dict | None = None,
) -> Sweep:
    """A sweep from a sweep file, or from a base config and `--grid key=v1,v2` arguments.

    name, seeds and overrides (--name, --seeds, --set) take precedence over the file.
    """
    if name is not None:  # before the files, so the error names the option
        _check_name(name, "--name")
    path = Path(path)
    tree = read_yaml(path)
    if _is_sweep(tree):
        if grid:
            raise SweepError(f"{path} is a sweep file with its own grid; --grid is for a base config")
        return _from_file(path, tree, name, seeds, overrides or {})
    if not grid:
        raise SweepError(
            f"{path} is a run config, not a sweep file (it has no `grid:`); "
            "give axes with --grid KEY=V1,V2 or use `bnlab run`"
        )
    axes_spec = {}
    for text in grid:
        key, values = parse_grid_arg(text)
        if key in axes_spec:
            raise SweepError(f"--grid {key} is given twice")
        axes_spec[key] = values
    return _build(
        name=name,
        source=str(path),
        base=path,
        settings={},
        axes_spec=axes_spec,
        seeds=seeds,
        overrides=overrides or {},
        where="--grid",
    )


def _check_name(name, where: str) -> None:
    """The sweep's name is its results directory's: <results>/<name>/."""
    if not isinstance(name, str) or not name:
        raise SweepError(f"{where} must be a non-empty string, got {shown(name)}")
    if problem := name_problem(name):
        raise SweepError(f"{where} {problem}, got {shown(name)}")


def _from_file(path: Path, tree: dict, name, seeds, overrides) -> Sweep:
    unknown = [k for k in tree if k not in SWEEP_KEYS]
    if unknown:
        raise SweepError(f"{path}: unknown key '{unknown[0]}'; a sweep file has: {', '.join(SWEEP_KEYS)}")
    if "grid" not in tree:
        raise SweepError(f"{path}: grid: is required, e.g. grid: {{model.activation: [relu, sigmoid]}}")
    if "base" not in tree or not isinstance(tree["base"], str):
        raise SweepError(f"{path}: base: the path of a base config is required (relative to the sweep file)")
    base = path.parent / tree["base"]
    if not base.exists() and (bundled.DIRECTORY / tree["base"]).is_file():  # a bundled config by its file name
        base = bundled.DIRECTORY / tree["base"]
    if base.is_dir():
        raise SweepError(f"{path}: base: {base} is a directory; it must be a run config (a YAML file)")
    if not base.is_file():
        raise SweepError(f"{path}: base: {base} does not exist")
    if _is_sweep(read_yaml(base)):
        raise SweepError(f"{path}: base: {base} is a sweep file; the base must be a run config (no grid:, no base:)")
    settings = tree.get("set") or {}
    if not isinstance(settings, dict):
        raise SweepError(f"{path}: set: must be a mapping of config keys to values")
    axes_spec = tree["grid"]
    if not isinstance(axes_spec, dict):
        raise SweepError(f"{path}: grid: must be a mapping of config keys to lists of values")
    file_seeds = tree.get("seeds")
    if seeds is None and file_seeds is not None:
        seeds = check_seeds(file_seeds, f"{path}: seeds")
    return _build(
        name=name if name is not None else tree.get("name", path.stem),
        source=str(path),
        base=base,
        settings=configs.flatten(settings),
        axes_spec=axes_spec,
        seeds=seeds,
        overrides=overrides,
        where=f"{path}",
    )


def _build(*, name, source, base: Path, settings, axes_spec, seeds, overrides, where) -> Sweep:
    resolved = configs.load(base)  # its own errors name the base file
    if name is None:  # an ad-hoc grid
        name = f"{resolved['experiment']}_sweep"
    _check_name(name, f"{where}: name")
    for origin, keys in ((f"{where}: set", settings), ("--set", overrides)):
        for key in keys:
            if key in RESERVED:
                raise SweepError(f"{origin}: {key} cannot be set in a sweep: {RESERVED[key]}")
    # The cells start from the base file as written, not as resolved: a key it leaves to a default
    # that another key sets (an arm's options default to the bn section's) follows the grid's value.
    tree = configs.apply_overrides(read_yaml(base), settings, f"{where}: set")
    resolved = configs.validate(tree, f"{where}: set")
    if overrides:
        tree = configs.apply_overrides(tree, overrides, "--set")
        resolved = configs.validate(tree, "--set")
    axes = [_axis(key, spec, tree, _grid_where(where)) for key, spec in axes_spec.items()]
    if not axes:
        raise SweepError(f"{where}: grid: needs at least one axis, e.g. model.activation: [relu, sigmoid]")
    seeds = [resolved["seed"]] if seeds is None else seeds
    cells = math.prod(len(a.values) for a in axes) * len(seeds)
    if cells > MAX_CELLS:
        sizes = " x ".join(f"{len(a.values)} ({a.key})" for a in axes) + f" x {len(seeds)} seeds"
        raise SweepError(
            f"{_grid_where(where)}: {sizes} is {cells:,} cells, more than {MAX_CELLS:,}; sweep fewer values"
        )
    fixed = {**settings, **overrides}
    cells = _expand(name, tree, axes, seeds, fixed, where)
    return Sweep(name, source, str(base), fixed, axes, list(seeds), cells)


def _grid_where(where: str) -> str:
    """How errors in a grid name it: `--grid`, or `<sweep file>: grid`."""
    return "--grid" if where == "--grid" else f"{where}: grid"


def _axis(key, spec, tree: dict, where: str) -> Axis:
    if not isinstance(key, str):
        raise SweepError(f"{where}: keys must be dotted config keys like model.activation, got {shown(key)}")
    configs.check_key(key, where)  # a section (model) is not an axis, even over mappings of its keys
    if key in RESERVED:
        raise SweepError(f"{where}: {key} cannot be a grid axis: {RESERVED[key]}")
    if key == "description":
        raise SweepError(f"{where}: description cannot be a grid axis; the sweep describes each cell")
    if key == configs.ARMS:  # a report's columns are its arms': every cell must have the same ones
        raise SweepError(
            f"{where}: arms cannot be a grid axis (every cell of a sweep compares the same arms); list them once "
            "under `set:` or in the base config, and sweep what they share (their options default to the bn section's)"
        )
    if isinstance(spec, dict):
        labels, raw = tuple(str(k) for k in spec), list(spec.values())
        for label in labels:
            if problem := name_problem(label):
                raise SweepError(f"{where}: {key}: value name {shown(label)} {problem}")
    elif isinstance(spec, list):
        labels, raw = None, spec
    else:
        raise SweepError(f"{where}: {key}: must be a list of values or a mapping of names to values, got {shown(spec)}")
    if not raw:
        raise SweepError(f"{where}: {key}: empty axis; give at least one value")
    if len(raw) > MAX_CELLS:  # before each value is validated: each costs a config's validation
        raise SweepError(f"{where}: {key}: {len(raw):,} values, more than a sweep's {MAX_CELLS:,} cells")
    values = []
    for value in raw:
        # Each value through the config's own validation, so 2 becomes 2.0 for a float key
        # and a bad value is named here, with its key, before any cell is built.
        resolved = configs.validate(configs.apply_overrides(tree, {key: value}, where), where)
        values.append(configs.get(resolved, key))
    seen = set()
    for value in values:  # validated values: 2 is 2.0 for a float key; lists compare by their JSON
        if (found := json.dumps(value)) in seen:
            raise SweepError(f"{where}: {key}: value {show(value)} is listed twice")
        seen.add(found)
    return Axis(key, tuple(values), labels)


def _expand(name: str, tree: dict, axes: list[Axis], seeds: list[int], fixed: dict, where: str) -> list[Cell]:
    cells, names = [], {}
    for indices in itertools.product(*(range(len(a.values)) for a in axes)):
        try:
            point = "_".join(a.fragment(i) for a, i in zip(axes, indices))
        except SweepError as e:
            raise SweepError(f"{_grid_where(where)}: {e}") from None
        described = ", ".join(f"{a.key}={a.display(i)}" for a, i in zip(axes, indices))
        for seed in seeds:
            cell_name = f"{point}_seed{seed}"
            if problem := name_problem(cell_name):  # each fragment is a name: only the length is left
                raise SweepError(
                    f"{_grid_where(where)}: cell name {shown(cell_name, 60)} {problem}; "
                    "name the values with short names, e.g. init.scale: {good: 0.05, bad: 5.0}"
                )
            if cell_name in names:
                raise SweepError(
                    f"{where}: two cells would both be named {cell_name} ({names[cell_name]} and {described}); "
                    "name the values of that axis, e.g. init.scale: {good: 0.05, bad: 5.0}"
                )
            names[cell_name] = described
            overrides = {a.key: a.values[i] for a, i in zip(axes, indices)}
            overrides.update(experiment=point, seed=seed)
            if "description" not in fixed:
                overrides["description"] = f"sweep {name}: {described}"
            config = configs.validate(configs.apply_overrides(tree, overrides), f"{where}: cell {cell_name}")
            cells.append(Cell(cell_name, point, seed, tuple(indices), config))
    return cells


def parse_grid_arg(text: str) -> tuple[str, Any]:
    """`key=v1,v2` -> (key, [v1, v2]); `key=good:0.05,bad:5` -> (key, {good: 0.05, bad: 5})."""
    if "=" not in text:
        raise SweepError(f"--grid {text}: expected KEY=V1,V2,..., e.g. --grid optimizer.learning_rate=0.01,1,2")
    key, raw = (part.strip() for part in text.split("=", 1))
    items = [item.strip() for item in _split_top_level(raw) if item.strip()]
    named = [re.fullmatch(r"([A-Za-z][A-Za-z0-9_.-]*):(\S.*)", item) for item in items]
    if items and all(named):
        return key, {m.group(1): _yaml_value(m.group(2)) for m in named}
    return key, [_yaml_value(item) for item in items]


def _split_top_level(text: str) -> list[str]:
    """Splits on commas outside brackets, so a list value like [100,100] stays whole."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _yaml_value(text: str):
    try:
        return parse_yaml(text)
    except (yaml.YAMLError, ValueError, OverflowError):
        return text


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` -> [0, 1, 2]."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SweepError(
            f"--seeds {text}: expected comma-separated non-negative integers, e.g. --seeds 0,1,2"
        ) from None
    return check_seeds(seeds, "--seeds")


def check_seeds(seeds, where: str) -> list[int]:
    if not isinstance(seeds, list) or not seeds:
        raise SweepError(f"{where}: must be a non-empty list of non-negative integers, e.g. [0, 1, 2]")
    if len(seeds) > MAX_CELLS:
        raise SweepError(f"{where}: {len(seeds):,} seeds, more than a sweep's {MAX_CELLS:,} cells")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SweepError(f"{where}: must be a non-empty list of non-negative integers, got {shown(s)}")
        if s > MAX_SEED:  # the config's own bound, said here with the list's name
            raise SweepError(f"{where}: a seed must be at most {MAX_SEED:,}, got {s}")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"{where}: a seed is listed twice: {seeds}")
    return list(seeds)


def of_seeds(config: dict, seeds: list[int], *, name: str, source: str) -> Sweep:
    """One resolved config over several seeds (`bnlab run --seeds`): a sweep without grid axes, cells seed<N>."""
    seeds = check_seeds(list(seeds), "--seeds")
    cells = [
        Cell(
            f"seed{seed}",
            config["experiment"],
            seed,
            (),
            configs.validate(configs.apply_overrides(config, {"seed": seed})),
        )
        for seed in seeds
    ]
    return Sweep(name, source, source, {}, [], seeds, cells)
