"""Every config key: its default, its type or choices, what it means and what is allowed (FIELDS).

A config is plain data, a nested dict whose every leaf is declared here; bn_lab.config.loading reads,
overrides and validates it against these declarations. Pure Python: no TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bn_lab import registry
from bn_lab.config import arms
from bn_lab.config.names import name_problem
from bn_lab.data import batches
from bn_lab.nets import weights


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
MAX_EVAL_IMAGES = 100_000  # images per evaluation call
# numpy takes seeds of any size, but a seed is part of directory names (seed<N>): the 32-bit range.
MAX_SEED = 2**32 - 1
# A kernel drawn at 1,000 x N(0, 1) already saturates every unit; beyond ~1e19 float32 overflows.
MAX_INIT_SCALE = 1000.0
# A residual network: 512 channels on the first stage, 128 blocks in all (32 per stage of four).
MAX_WIDTH = 512
MAX_BLOCKS = 128


def _units(v):
    ok = 0 < len(v) <= MAX_HIDDEN_LAYERS and all(
        isinstance(u, int) and not isinstance(u, bool) and 1 <= u <= MAX_UNITS for u in v
    )
    return None if ok else f"must be a non-empty list of at most {MAX_HIDDEN_LAYERS} integers in 1..{MAX_UNITS}"


def _blocks(v):
    ok = 0 < len(v) <= 6 and all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in v)
    if not ok or sum(v) > MAX_BLOCKS:
        return f"must be a list of 1 to 6 stages' block counts (each >= 1), at most {MAX_BLOCKS} blocks in all"
    return None


PLACEMENTS = arms.PLACEMENTS
INITS = weights.INITS
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
    "model.blocks": Field(
        [2, 2],
        list,
        "resnet: residual blocks per stage (each stage after the first halves the side and doubles the channels)",
        _blocks,
    ),
    "model.width": Field(16, int, "resnet: channels of the stem and the first stage", _between(1, MAX_WIDTH)),
    "model.stem_stride": Field(
        1, int, "resnet: the stem convolution's stride (2: the blocks see 14×14 MNIST maps, 4× cheaper)", _between(1, 2)
    ),
    "init.distribution": Field("normal", INITS, "distribution of the initial weights"),
    "init.scale": Field(
        0.05,
        float,
        f"stddev for normal / truncated_normal (unused by glorot_uniform and he_normal), at most {MAX_INIT_SCALE:g}",
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
    "train.epochs": Field(
        None,
        float,
        "train for this many passes over the training set: sets train.steps to ⌊epochs · images / batch_size⌋ "
        "(an lr × batch-size grid at equal epochs)",
        _positive,
        nullable=True,
    ),
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
    "train.eval_batch_size": Field(
        None,
        int,
        "images per evaluation call (null: sized to the network, 1,000 conv net images, a whole split of the MLP's; training-mode checks: as many whole training batches as fit, each normalized alone; any size gives the same figures but for their last bits)",
        _between(1, MAX_EVAL_IMAGES),
        nullable=True,
    ),
    "train.single_samples": Field(200, int, "first N test images fed one at a time after training", _at_least(1)),
    "train.jit_compile": Field(
        True, bool, "compile the training loop with XLA (the conv net turns it off: see Performance)"
    ),
    "data.dataset": Field("mnist", registry.DATASETS, "what the networks learn to classify (npz: the file data.path)"),
    "data.path": Field(None, str, "npz: the .npz file holding x_train, y_train, x_test, y_test", nullable=True),
    "data.validation_size": Field(
        5000, int, "the first N training images are the validation split (MNIST: 5,000, as TF1)", _at_least(1)
    ),
    "data.source": Field("auto", registry.DATA_SOURCES, "mnist: where MNIST comes from"),
    "data.idx_dir": Field(None, str, "folder with the four IDX files", nullable=True),
    "data.batch_order": Field(
        "iid", BATCH_ORDERS, "iid: shuffled epochs; class_grouped: each batch from data.classes_per_batch classes"
    ),
    "data.classes_per_batch": Field(
        2, int, "class_grouped: how many classes each training batch is drawn from", _at_least(1)
    ),
    "data.standardize": Field(
        False,
        bool,
        "feed the networks (pixel − mean) / std per channel, over the training split, instead of pixels in [0, 1] "
        "(what networks without normalization at their input need: the residual experiments)",
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
        _at_least(1),
    ),
    # The third way to evaluate a network with batch statistics (bn_lab.training.evaluation): as it trained.
    "batch_stats.enabled": Field(
        True,
        bool,
        "also evaluate each arm that normalizes with batch statistics in training mode, on validation batches of train.batch_size (grouped as in training)",
    ),
    # What BN does inside the network (bn_lab.probes.diagnostics, bn_lab.probes.landscape, bn_lab.probes.ics): see the README;
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
    "diagnostics.residual": Field(
        False,
        bool,
        "resnet: also measure each block's branch share of its output's variance, training mode "
        "(De & Smith's Fig. 2; residual_variance.png)",
    ),
}


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
