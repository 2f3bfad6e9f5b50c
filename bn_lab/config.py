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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bn_lab import arms, batches, float32, registry
from bn_lab.architecture import NUM_CLASSES
from bn_lab.bn import groups
from bn_lab.names import MAX_NAME, name_problem  # noqa: F401 - config's own names
from bn_lab.user_text import listed
from bn_lab.yaml_io import ConfigError, dump, one_line, parse_yaml, read_yaml, shown  # noqa: F401 - config's own names


@dataclass(frozen=True)
class Field:
    default: Any
    kind: type | tuple | registry.Registry  # int, float, str, bool, list, a tuple of choices or a registry
    help: str  # what the key means: the README's table of keys (reference_table)
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None
    nullable: bool = False

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The allowed names of a key that picks something by name (read live: a registered piece counts)."""
        if isinstance(self.kind, registry.Registry):
            return self.kind.names()
        return self.kind if isinstance(self.kind, tuple) else None


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
# A kernel drawn at 1,000 x N(0, 1) already saturates every unit; beyond ~1e19 float32 overflows.
MAX_INIT_SCALE = 1000.0


def _units(v):
    ok = 0 < len(v) <= MAX_HIDDEN_LAYERS and all(
        isinstance(u, int) and not isinstance(u, bool) and 1 <= u <= MAX_UNITS for u in v
    )
    return None if ok else f"must be a non-empty list of at most {MAX_HIDDEN_LAYERS} integers in 1..{MAX_UNITS}"


PLACEMENTS = arms.PLACEMENTS
INITS = ("normal", "truncated_normal", "glorot_uniform")
BATCH_ORDERS = batches.ORDERS

# Defaults are the 3x100 MLP lesson; the conv net configs override what differs.
FIELDS: dict[str, Field] = {
    "experiment": Field("mlp", str, "name of the experiment (results/<experiment>/)", name_problem),
    # Any UTF-8 text, line breaks and control characters included: it is only a figure's title
    # (matplotlib draws them) and a quoted string in config.yaml and summary.json, which both
    # escape them and read back the same; error messages escape them to stay one line.
    "description": Field("", str, "free text shown in reports"),
    "seed": Field(0, int, "seeds the initial weights and the batch order", _between(0, MAX_SEED)),
    "model.name": Field("mlp", registry.MODELS, "network architecture"),
    "model.activation": Field("relu", registry.ACTIVATIONS, "hidden-layer activation"),
    "model.hidden_units": Field([100, 100, 100], list, "mlp: width of each hidden layer", _units),
    "model.conv_layers": Field(19, int, "convnet: number of 3x3 conv layers", _between(1, MAX_CONV_LAYERS)),
    "model.dense_units": Field(100, int, "convnet: width of the hidden dense layer", _between(1, MAX_UNITS)),
    "init.distribution": Field("normal", INITS, "distribution of the initial weights"),
    "init.scale": Field(
        0.05,
        float,
        f"stddev for normal / truncated_normal (unused by glorot_uniform), at most {MAX_INIT_SCALE:g}",
        lambda v: (
            None if 0 < v <= MAX_INIT_SCALE else f"must be in (0, {MAX_INIT_SCALE:g}] (the lesson's bad init is 5)"
        ),
    ),
    "bn.backend": Field(
        "keras",
        registry.BN_BACKENDS,
        "batch-norm implementation: the Keras layer, tf.nn.moments + tf.nn.batch_normalization, the arithmetic written out",
    ),
    "bn.momentum": Field(0.99, float, "decay of the population mean/variance", _fraction),
    "bn.epsilon": Field(0.001, float, "added to the variance", _positive),
    "bn.group_size": Field(
        0,
        int,
        "normalize groups of this many examples of a training batch (ghost batches; 0: the whole batch)",
        _at_least(0),
    ),
    "bn.placement": Field(
        "before_activation", PLACEMENTS, "where BN sits in a hidden layer (before_activation: the kernel has no bias)"
    ),
    "optimizer.name": Field("sgd", registry.OPTIMIZERS, "optimizer (plain SGD has no momentum)"),
    "optimizer.learning_rate": Field(0.01, float, "learning rate", _positive),
    "loss": Field(
        "softmax_cross_entropy", registry.LOSSES, "training loss (sigmoid_cross_entropy: the conv net notebooks)"
    ),
    "train.batch_size": Field(60, int, "mini-batch size", _at_least(1)),
    "train.steps": Field(50000, int, "number of training batches", _between(1, MAX_STEPS)),
    "train.eval_every": Field(500, int, "validation loss/accuracy every N batches (and at 0)", _between(1, MAX_STEPS)),
    "train.train_eval_every": Field(
        0, int, "loss/accuracy on the current training batch every N batches (0: never)", _between(0, MAX_STEPS)
    ),
    "train.test_every": Field(
        0,
        int,
        "test loss/accuracy every N batches too, at validation evaluations (0: after training only)",
        _between(0, MAX_STEPS),
    ),
    "train.single_samples": Field(200, int, "first N test images fed one at a time after training", _at_least(1)),
    "train.jit_compile": Field(
        True, bool, "compile the training loop with XLA (the conv net turns it off: see Performance)"
    ),
    "data.source": Field("auto", registry.DATA_SOURCES, "where MNIST comes from"),
    "data.idx_dir": Field(None, str, "folder with the four IDX files", nullable=True),
    "data.batch_order": Field(
        "iid", BATCH_ORDERS, "iid: shuffled epochs; class_grouped: each batch from data.classes_per_batch classes"
    ),
    "data.classes_per_batch": Field(
        2, int, "class_grouped: how many classes each training batch is drawn from", _between(1, NUM_CLASSES)
    ),
    "data.train_limit": Field(None, int, "use only the first N training images", _at_least(1), nullable=True),
    "data.val_limit": Field(None, int, "use only the first N validation images", _at_least(1), nullable=True),
    "data.test_limit": Field(None, int, "use only the first N test images", _at_least(1), nullable=True),
    # Exact population statistics (PreciseBN) for the BN network at every validation evaluation.
    # 3,000 images = 50 batches of 60: the per-batch noise of the averaged mean shrinks by
    # sqrt(50), while the cost stays a few percent of the run's (scripts/bench.py measures it).
    "precise_bn.enabled": Field(
        True, bool, "also evaluate each arm that has population statistics (BN) with exact ones"
    ),
    "precise_bn.images": Field(
        3000,
        int,
        "training images the exact statistics average over (whole batches, at most data.train_limit)",
        _between(1, 55000),
    ),
    # The third way to evaluate a network with batch statistics (bn_lab.evaluation): as it trained.
    "batch_stats.enabled": Field(
        True,
        bool,
        "also evaluate each arm that normalizes with batch statistics in training mode, on validation batches of train.batch_size (grouped as in training)",
    ),
    # What BN does inside the network (bn_lab.diagnostics, bn_lab.landscape, bn_lab.ics): see the README;
    # their cost is measured by scripts/bench.py.
    "diagnostics.enabled": Field(True, bool, "measure every hidden layer at every validation evaluation"),
    "diagnostics.probe_images": Field(
        1000, int, "the first N validation images the diagnostics look at (at most data.val_limit)", _between(1, 5000)
    ),
    "diagnostics.unit": Field(
        0, int, "the unit whose input percentiles are drawn (the paper's typical unit)", _at_least(0)
    ),
    "diagnostics.landscape": Field(False, bool, "also probe the loss landscape along the gradient (slower)"),
    "diagnostics.ics": Field(
        False,
        bool,
        "also measure internal covariate shift: each layer's gradient before and after the layers below it step (slower)",
    ),
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
    return list(dict.fromkeys(k.split(".", 1)[0] for k in FIELDS)) + [ARMS]


# The arms a run compares (bn_lab.arms): a list, not a leaf of FIELDS. A config without it
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


def plain(value: Any) -> Any:
    """numpy's scalars (np.int64(20), np.float32(0.5), np.bool_) as the Python numbers they stand for,
    in lists too: the Python API takes what numpy code has at hand, without importing numpy here."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


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


def _record_what_is_used(flat: dict) -> None:
    """The config records the numbers a run uses: a count larger than the data holds (the default
    or asked for) is cut to what the data holds. Cutting, not refusing, keeps validation idempotent:
    a resolved config with a smaller data.train_limit set over it (a sweep's axis) stays valid."""
    train_size = flat["data.train_limit"] or SPLIT_SIZES["train"]
    val_size = flat["data.val_limit"] or SPLIT_SIZES["validation"]
    flat["precise_bn.images"] = precise_bn_images(flat["precise_bn.images"], train_size, flat["train.batch_size"])
    flat["diagnostics.probe_images"] = min(flat["diagnostics.probe_images"], val_size)


def _check_consistency(flat: dict, where: str) -> None:
    """Rules that involve more than one key."""
    train_size = flat["data.train_limit"] or SPLIT_SIZES["train"]
    test_size = flat["data.test_limit"] or SPLIT_SIZES["test"]
    for key, size in (
        ("train", SPLIT_SIZES["train"]),
        ("val", SPLIT_SIZES["validation"]),
        ("test", SPLIT_SIZES["test"]),
    ):
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
    if problem := groups.problem(flat["bn.group_size"], flat["train.batch_size"]):
        raise ConfigError(f"{where}: bn.group_size {problem}")
    if flat["data.batch_order"] == "class_grouped" and flat["data.classes_per_batch"] > flat["train.batch_size"]:
        raise ConfigError(
            f"{where}: data.classes_per_batch {flat['data.classes_per_batch']} is more than train.batch_size "
            f"{flat['train.batch_size']}: each class needs at least one example in a batch"
        )
    # The probes that add to the diagnostics run only with them: config.yaml must say what was measured.
    opt_in = [k for k in ("diagnostics.landscape", "diagnostics.ics", "diagnostics.paper_figure") if flat[k]]
    if opt_in and not flat["diagnostics.enabled"]:
        raise ConfigError(
            f"{where}: {opt_in[0]} needs diagnostics.enabled: true, and it is false; "
            f"set diagnostics.enabled: true or {opt_in[0]}: false"
        )
    if flat["data.source"] == "idx" and not flat["data.idx_dir"]:
        raise ConfigError(f"{where}: data.source is 'idx' but data.idx_dir is not set")
    indices = flat["train.steps"] * flat["train.batch_size"]
    if indices > MAX_BATCH_INDICES:
        raise ConfigError(
            f"{where}: train.steps x train.batch_size must be <= {MAX_BATCH_INDICES:,} (the batch order is "
            f"precomputed, 4 bytes an index), got {flat['train.steps']:,} x {flat['train.batch_size']:,}"
        )
    _record_what_is_used(flat)
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
    arms_given = ARMS in given  # `arms: null` is no list of arms: an error, not the lesson's pair
    given_arms = given.pop(ARMS, None)
    flat = {k: copy.deepcopy(f.default) for k, f in FIELDS.items()}
    for key, value in given.items():
        flat[key] = _coerce(key, value, where)
    _check_consistency(flat, where)
    resolved = unflatten(flat)
    if arms_given:
        from bn_lab.architecture import hidden_shapes

        resolved[ARMS] = arms.resolve(plain(given_arms), resolved, hidden_shapes(resolved), where)
    _check_batches_of_the_training_size(resolved, where)
    return resolved


def _check_batches_of_the_training_size(config: dict, where: str) -> None:
    """An arm with population statistics is also evaluated in training mode on batches of the
    training size (bn_lab.evaluation): the splits they are cut from must hold one."""
    population = [a.name for a in arms.of(config) if a.has_population_statistics]
    if not population:
        return
    batch, data = config["train"]["batch_size"], config["data"]
    needs = [
        ("val", SPLIT_SIZES["validation"], "the batch-statistics evaluation", "set batch_stats.enabled: false"),
        ("test", SPLIT_SIZES["test"], "the batch-size curve", None),
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


def reference_table() -> str:
    """The README's table of every key, from FIELDS and the registries (tests/test_readme.py keeps them equal)."""

    def default(value) -> str:
        return (
            "null"
            if value is None
            else f"`{json.dumps(value) if not isinstance(value, str) else value or chr(34) * 2}`"
        )

    lines = ["| key | default | what |", "| --- | --- | --- |"]
    for key, field in FIELDS.items():
        allowed = f"; one of {', '.join(f'`{c}`' for c in field.choices)}" if field.choices else ""
        lines.append(f"| `{key}` | {default(field.default)} | {field.help}{allowed} |")
    return "\n".join(lines)
