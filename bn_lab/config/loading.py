"""Experiment configs: defaults, YAML loading, `--set` overrides and validation.

A config is plain data: a nested dict whose every leaf is declared in FIELDS with
its default and what is allowed. Everything is validated before anything trains,
and every problem is one line that names the file, the key and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import yaml

from bn_lab.config import arms, declared, float32
from bn_lab.config.fields import FIELDS, MAX_BATCH_INDICES
from bn_lab.config.user_text import listed
from bn_lab.config.yaml_io import ConfigError, parse_yaml, read_yaml, shown
from bn_lab.data.datasets import DataError
from bn_lab.nets.architecture import residual_models
from bn_lab.nets.bn import groups


def defaults() -> dict:
    """Every key at its default, as a nested config."""
    return unflatten({k: copy.deepcopy(f.default) for k, f in FIELDS.items()})


def flatten(tree: dict, prefix: str = "") -> dict:
    """{dotted key: value}. Only a section's mapping is opened up: a mapping anywhere else (`arms:
    {}`, `seed: {}`, `train: {steps: {}}`) stays a value, for validation to refuse, never dropped."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in FIELDS and dotted != ARMS and (value or _is_section(dotted)):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _is_section(dotted: str) -> bool:
    return any(k.startswith(dotted + ".") for k in FIELDS)


def unflatten(flat: dict) -> dict:
    tree: dict = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def sections() -> list[str]:
    """The top-level keys: plain keys (seed) and sections (model, train, ...), in FIELDS' order."""
    return list(dict.fromkeys(k.split(".", 1)[0] for k in FIELDS)) + [ARMS]


# The arms a run compares (bn_lab.config.arms): a list, not a leaf of FIELDS. A config without it
# compares the lesson's pair, and its resolved form (config.yaml, its digest) has no `arms`.
ARMS = "arms"


def check_key(key: str, where: str) -> None:
    """Raises the one-line error for a key that is not a config key (with its closest match)."""
    if key not in FIELDS and key != ARMS:
        raise _unknown_key(key, where)


def _unknown_key(key: str, where: str) -> ConfigError:
    if not key.strip():
        return ConfigError(f"{where}: a key is empty; keys are dotted names like optimizer.learning_rate")
    if key.startswith(ARMS + "."):  # `arms: {name: ...}`: one arm, not a list of them
        return ConfigError(
            f"{where}: arms must be a non-empty list of arms ({{name: ..., normalizer: ...}}), got a mapping"
        )
    if key in sections():  # a section given a scalar: `model: 5`
        inside = [k for k in FIELDS if k.startswith(key + ".")]
        return ConfigError(f"{where}: {key} is a section, a mapping of its keys ({', '.join(inside)})")
    close = difflib.get_close_matches(key, list(FIELDS), n=1, cutoff=0.5)
    if not close:  # a bare or misspelt leaf name ("activation", "lerning_rate") should still find its section
        leaves = {k.rsplit(".", 1)[-1]: k for k in FIELDS}
        leaf = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaves), n=1, cutoff=0.75)
        close = [leaves[leaf[0]]] if leaf else []
    if close:
        return ConfigError(f"{where}: unknown key {shown(key)} (did you mean '{close[0]}'?)")
    return ConfigError(f"{where}: unknown key {shown(key)}; the top-level keys are {', '.join(sections())}")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plain(value: Any) -> Any:
    """numpy's scalars (np.int64(20), np.float32(0.5), np.bool_) as the Python numbers they stand for,
    in lists too: the Python API takes what numpy code has at hand, without importing numpy here."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


_NOT_FINITE = ("inf", "infinity", "nan", ".inf", ".nan")


def _coerce(key: str, value: Any, where: str) -> Any:
    field = FIELDS[key]
    value = plain(value)
    if value is None:
        if field.nullable:
            return None
        raise ConfigError(f"{where}: {key} must not be empty")
    kind = field.kind
    if field.choices is not None:
        if not isinstance(value, str) or value not in field.choices:
            raise ConfigError(f"{where}: {key}: unknown value {shown(value)}; allowed: {', '.join(field.choices)}")
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, list),
    }[kind]
    if not ok:
        if kind is float and isinstance(value, str) and value.strip().lower().lstrip("+-") in _NOT_FINITE:
            # YAML reads `inf` and `nan` as strings (its infinity is `.inf`): no number to take.
            raise ConfigError(f"{where}: {key} must be a finite number, got {shown(value)}")
        raise ConfigError(f"{where}: {key} must be {kind.__name__}, got {shown(value)}")
    if kind is float:
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            value = math.inf
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be finite, got {shown(value)}")
    if kind is str and not _utf8(value):
        # Undecodable bytes (a non-UTF-8 argument arrives as lone surrogates): they would
        # fail later, in config.yaml or in a figure's title, after training.
        raise ConfigError(f"{where}: {key} must be UTF-8 text, got {shown(value)}")
    if field.check and (problem := field.check(value)):
        raise ConfigError(f"{where}: {key} {problem}, got {shown(value)}")
    if kind is float and (problem := float32.problem(value, field.check)):  # as the networks will use it
        raise ConfigError(f"{where}: {key} {problem}, got {shown(value)}")
    return value


def precise_bn_images(images: int, train_size: int, batch_size: int) -> int:
    """The training images exact statistics average over: whole training batches, at least one."""
    return max(1, min(images, train_size) // batch_size) * batch_size


def _record_what_is_used(flat: dict, sizes: dict) -> None:
    """The config records the numbers a run uses: a count larger than the data holds (the default
    or asked for) is cut to what the data holds. Cutting, not refusing, keeps validation idempotent:
    a resolved config with a smaller data.train_limit set over it (a sweep's axis) stays valid."""
    train_size = flat["data.train_limit"] or sizes["train"]
    val_size = flat["data.val_limit"] or sizes["validation"]
    flat["precise_bn.images"] = precise_bn_images(flat["precise_bn.images"], train_size, flat["train.batch_size"])
    flat["diagnostics.probe_images"] = min(flat["diagnostics.probe_images"], val_size)


def _declared(flat: dict, where: str):
    """(dataset, architecture) the keys declare; ConfigError naming the file for a dataset that cannot be."""
    config = unflatten(flat)
    try:
        return declared.dataset(config), declared.architecture(config)
    except DataError as e:
        raise ConfigError(f"{where}: {e}") from None


def _check_consistency(flat: dict, where: str) -> None:
    """Rules that involve more than one key, and the dataset's and the model's declarations."""
    dataset, architecture = _declared(flat, where)
    sizes = dataset.sizes
    for key, split in (("train", "train"), ("val", "validation"), ("test", "test")):
        limit = flat[f"data.{key}_limit"]
        if limit is not None and limit > sizes[split]:
            raise ConfigError(f"{where}: data.{key}_limit must be <= {sizes[split]} (the split's size), got {limit}")
    train_size = flat["data.train_limit"] or sizes["train"]
    test_size = flat["data.test_limit"] or sizes["test"]
    if flat["train.epochs"] is not None:  # the steps follow from the epochs: recorded as used
        flat["train.steps"] = max(1, math.floor(flat["train.epochs"] * train_size / flat["train.batch_size"]))
    if flat["train.batch_size"] > train_size:
        raise ConfigError(
            f"{where}: train.batch_size {flat['train.batch_size']} is larger than the training set ({train_size} images)"
        )
    if flat["train.single_samples"] > test_size:
        raise ConfigError(
            f"{where}: train.single_samples {flat['train.single_samples']} is larger than the test set ({test_size} images)"
        )
    if problem := groups.problem(flat["bn.group_size"], flat["train.batch_size"]):
        raise ConfigError(f"{where}: bn.group_size {problem}")
    if flat["data.classes_per_batch"] > dataset.classes:
        raise ConfigError(
            f"{where}: data.classes_per_batch {flat['data.classes_per_batch']} is more than the dataset's "
            f"{dataset.classes} classes"
        )
    if flat["data.batch_order"] == "class_grouped" and flat["data.classes_per_batch"] > flat["train.batch_size"]:
        raise ConfigError(
            f"{where}: data.classes_per_batch {flat['data.classes_per_batch']} is more than train.batch_size "
            f"{flat['train.batch_size']}: each class needs at least one example in a batch"
        )
    # The probes that add to the diagnostics run only with them: config.yaml must say what was measured.
    opt_in = [
        k
        for k in ("diagnostics.landscape", "diagnostics.ics", "diagnostics.paper_figure", "diagnostics.residual")
        if flat[k]
    ]
    if opt_in and not flat["diagnostics.enabled"]:
        raise ConfigError(
            f"{where}: {opt_in[0]} needs diagnostics.enabled: true, and it is false; "
            f"set diagnostics.enabled: true or {opt_in[0]}: false"
        )
    if flat["diagnostics.residual"] and flat["model.name"] not in (residual := residual_models()):
        raise ConfigError(
            f"{where}: diagnostics.residual measures residual blocks, and model.name is {flat['model.name']}; "
            f"use it with model.name: {' or '.join(residual)}, or set diagnostics.residual: false"
        )
    if flat["data.source"] == "idx" and not flat["data.idx_dir"]:
        raise ConfigError(f"{where}: data.source is 'idx' but data.idx_dir is not set")
    indices = flat["train.steps"] * flat["train.batch_size"]
    if indices > MAX_BATCH_INDICES:
        raise ConfigError(
            f"{where}: train.steps x train.batch_size must be <= {MAX_BATCH_INDICES:,} (the batch order is "
            f"precomputed, 4 bytes an index), got {flat['train.steps']:,} x {flat['train.batch_size']:,}"
        )
    _record_what_is_used(flat, sizes)
    narrowest = min(layer.units for layer in architecture.hidden)
    if flat["diagnostics.unit"] >= narrowest:
        raise ConfigError(
            f"{where}: diagnostics.unit must be < {narrowest} (the narrowest hidden layer's units), "
            f"got {flat['diagnostics.unit']}"
        )


def validate(tree: dict, where: str = "config") -> dict:
    """Fills in defaults, checks every key and value; returns the resolved config."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: must be a mapping of keys to values, got {type(tree).__name__}")
    given = flatten(tree)
    for key in given:
        check_key(key, where)
    arms_given = ARMS in given  # `arms: null` is no list of arms: an error, not the lesson's pair
    given_arms = given.pop(ARMS, None)
    flat = {k: copy.deepcopy(f.default) for k, f in FIELDS.items()}
    for key, value in given.items():
        flat[key] = _coerce(key, value, where)
    _check_consistency(flat, where)
    resolved = unflatten(flat)
    if arms_given:
        shapes = [layer.output_shape for layer in declared.architecture(resolved).hidden]
        resolved[ARMS] = arms.resolve(plain(given_arms), resolved, shapes, where)
    _check_batches_of_the_training_size(resolved, where)
    return resolved


def _check_batches_of_the_training_size(config: dict, where: str) -> None:
    """An arm with population statistics is also evaluated in training mode on batches of the
    training size (bn_lab.training.evaluation): the splits they are cut from must hold one."""
    population = [a.name for a in arms.of(config) if a.has_population_statistics]
    if not population:
        return
    batch, data, sizes = config["train"]["batch_size"], config["data"], declared.dataset(config).sizes
    needs = [
        ("val", sizes["validation"], "the batch-statistics evaluation", "set batch_stats.enabled: false"),
        ("test", sizes["test"], "the batch-size curve", None),
    ]
    for key, size, evaluation, otherwise in needs:
        if key == "val" and not config["batch_stats"]["enabled"]:
            continue
        images = data[f"{key}_limit"] or size
        if images < batch:
            raise ConfigError(
                f"{where}: data.{key}_limit {images} is smaller than train.batch_size {batch}: {evaluation} of "
                f"{listed(population)} (population statistics) needs a batch of the training size; raise "
                f"data.{key}_limit" + (f" or {otherwise}" if otherwise else "")
            )


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=c` -> ('a.b', c) with c parsed as YAML (so 2 is an int, 1e-3 a float, [1, 2] a list)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key=value, e.g. --set optimizer.learning_rate=0.5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text}: the key is empty; expected key=value, e.g. --set optimizer.learning_rate=0.5")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError, OverflowError):  # not YAML (or a date/number YAML cannot build): the text
        value = raw
    return key, value


def apply_overrides(tree: dict, overrides: dict[str, Any], where: str = "--set") -> dict:
    flat = flatten(tree)
    # flattened: `--set model={name: convnet}` is model.name=convnet, as `model: {name: convnet}` is in a file
    for key, value in flatten(overrides).items():
        check_key(key, where)
        flat[key] = value
    return unflatten(flat)


def origin(path: str | Path, overrides: dict[str, Any] | None = None) -> str:
    """How an error names a config read from a file: the file, and whether --set changed it."""
    return f"{path} (with --set)" if overrides else str(path)


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    """Reads a YAML config, applies `--set` overrides, validates; returns the resolved config."""
    tree = read_yaml(path)
    for key in flatten(tree):  # name the file for its own unknown keys
        check_key(key, str(path))
    if overrides:
        tree = apply_overrides(tree, overrides)
    return validate(tree, origin(path, overrides))


def get(config: dict, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def digest(config: dict) -> str:
    """A short stable fingerprint of a resolved config (sweeps compare it on resume)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
