"""How much memory a run needs, estimated from its config before anything is built, and the
refusal of a run that cannot fit in this machine's memory (no TensorFlow here).

Every float32 parameter lives in several copies while a run's arms train: the numpy initial weights
once, then per network its variable, its gradient, its optimizer's slots and about two
temporaries of XLA's: 13 copies with Adam. The estimate is a little high of what was measured
(docs/performance.md, "Measured choices"), so that what it lets through fits.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from bn_lab import registry
from bn_lab.config import arms, declared
from bn_lab.config.fields import MAX_EVAL_IMAGES
from bn_lab.config.yaml_io import ConfigError

SLOTS = {"sgd": 0, "adam": 2}  # optimizer state per parameter
TEMPORARIES = 2  # per parameter, XLA's buffers while a step runs
ACTIVATION_COPIES = 6  # per activation value of a training batch: forward, backward, BN's statistics
PROCESS_BYTES = 1.2e9  # TensorFlow, the data arrays and Python: a small run's resident size (docs/performance.md)
SHARE = 0.9  # of the machine's memory a run may plan to use


def parameters(config: dict) -> int:
    layers = declared.architecture(config).layers
    return sum(math.prod(layer.kernel_shape) + layer.units * 3 for layer in layers)  # + bias, gamma, beta


def activations_per_image(config: dict) -> int:
    """Values every hidden layer computes for one image."""
    return sum(math.prod(layer.output_shape) for layer in declared.architecture(config).hidden)


# Images per evaluation call where train.eval_batch_size is null: at least EVAL_IMAGES, more where
# they hold fewer than EVAL_VALUES activation values (64 MB): larger calls cost less per image
# (docs/performance.md), and the conv net's memory stays bounded (1,000 of its images hold 26 M).
EVAL_IMAGES = 1000
EVAL_VALUES = 2**24


def eval_batch_size(config: dict) -> int:
    """Images per evaluation call: train.eval_batch_size, or where it is null sized to the network."""
    chosen = config["train"]["eval_batch_size"]
    if chosen is not None:
        return chosen
    return max(EVAL_IMAGES, min(MAX_EVAL_IMAGES, EVAL_VALUES // max(1, activations_per_image(config))))


def estimate_bytes(config: dict) -> int:
    networks = len(arms.of(config))
    copies = 1 + networks * (2 + SLOTS.get(config["optimizer"]["name"], 2) + TEMPORARIES)
    per_image = activations_per_image(config)
    batch = config["train"]["batch_size"] * per_image * ACTIVATION_COPIES * networks
    evaluation = eval_batch_size(config) * per_image * 2
    return int(4 * (parameters(config) * copies + batch + evaluation) + PROCESS_BYTES)


def machine_bytes() -> int:
    """This machine's memory, or the container's limit (cgroup v2, then v1) where that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def size_keys(config: dict) -> str:
    """The keys that size a run of this model (its declaration's SIZE_KEYS), for the refusal's line."""
    model = registry.MODELS.get(config["model"]["name"])
    return ", ".join([*model.SIZE_KEYS, "optimizer.name"])


def check(config: dict, where: str = "config") -> None:
    """Refuses, in one line naming the keys, a run that cannot fit in this machine's memory."""
    needed, available = estimate_bytes(config), machine_bytes()
    if needed <= SHARE * available:
        return
    raise ConfigError(
        f"{where}: {size_keys(config)}: this run needs about {needed / 2**30:.1f} GiB of memory "
        f"({len(arms.of(config))} networks of {parameters(config):,} parameters with {config['optimizer']['name']}), "
        f"more than this machine's {available / 2**30:.1f} GiB; use fewer or narrower layers"
    )
