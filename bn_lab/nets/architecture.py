"""What a model is, declared before anything is built (no TensorFlow): its layers, each with one
kernel, in the order the forward pass runs them, from the dataset's image shape and classes and the
config. Every reader of a network's shape reads this declaration: the network itself
(bn_lab.nets.network), the initial weights, config validation (a normalizer's options against the
shapes it will see), the memory estimate, the training loop's gradient norms, the diagnostics,
the effective learning rate, the ICS probe's "layers below" and weights.npz's names (layer k is
`layers[k-1]`).

A model family is a registry entry (registry.MODELS): `declare(config, image_shape, classes) ->
Architecture`. `mlp` and `convnet` are stacks (each hidden layer: kernel, normalizer, activation);
`resnet` is residual blocks (bn_lab.nets.resnet).
"""

from __future__ import annotations

from dataclasses import dataclass

from bn_lab import registry

# What a layer is in its network: the networks' forward passes, and the residual normalizers
# (skip_init, fixup), ask a layer's role, never its position.
STACK = "stack"  # a hidden layer of a plain stack: kernel -> normalizer -> activation
STEM = "stem"  # a residual network's first convolution, before the blocks
BRANCH = "branch"  # a residual branch's layer before its last
BRANCH_END = "branch_end"  # the last layer of a residual branch (its output is added to the skip path)
SHORTCUT = "shortcut"  # a 1×1 projection on the skip path where a block changes the shape
OUTPUT = "output"  # the classifier: kernel + bias
ROLES = (STACK, STEM, BRANCH, BRANCH_END, SHORTCUT, OUTPUT)


@dataclass(frozen=True)
class Layer:
    """One layer with a kernel."""

    kind: str  # "dense" or "conv" (3×3, or 1×1 for a shortcut)
    kernel_shape: tuple[int, ...]  # (fan in, units) or (k, k, channels in, channels out)
    output_shape: tuple[int, ...]  # one example's shape at its kernel's output: (units,) or (side, side, channels)
    stride: int = 1
    role: str = STACK
    activated: bool = True  # its output goes through the activation (a branch's end and a shortcut: not)
    block: int | None = None  # a residual layer's block, counted from 1

    @property
    def units(self) -> int:
        return self.kernel_shape[-1]


@dataclass(frozen=True)
class Architecture:
    family: str  # which network builds it: "stack" or "resnet"
    input_shape: tuple[int, ...]  # one example's input: (features,) for an MLP, (height, width, channels)
    layers: tuple[Layer, ...]  # in forward order, the output layer last

    @property
    def hidden(self) -> tuple[Layer, ...]:
        """Every layer but the output layer: each has the arm's normalizer, if it has one."""
        return self.layers[:-1]

    @property
    def blocks(self) -> int:
        return max((layer.block or 0 for layer in self.layers), default=0)


def _side_after(side: int, stride: int) -> int:
    return -(-side // stride)  # "same" padding: ceil(side / stride)


def _output_layer(features: int, classes: int) -> Layer:
    return Layer("dense", (features, classes), (classes,), role=OUTPUT, activated=False)


def mlp(config: dict, image_shape: tuple[int, int, int], classes: int) -> Architecture:
    """height·width·channels -> hidden_units... -> classes (the lesson: 784 -> 100, 100, 100 -> 10)."""
    features = image_shape[0] * image_shape[1] * image_shape[2]
    layers, fan_in = [], features
    for units in config["model"]["hidden_units"]:
        layers.append(Layer("dense", (fan_in, units), (units,)))
        fan_in = units
    return Architecture("stack", (features,), (*layers, _output_layer(fan_in, classes)))


mlp.SIZE_KEYS = ("model.hidden_units",)  # the keys that size it (the memory estimate names them)


def convnet(config: dict, image_shape: tuple[int, int, int], classes: int) -> Architecture:
    """conv_layers 3×3 convolutions with 4·i filters, stride 2 when i % 3 == 0, then a dense layer of
    dense_units (the exercise: 19 convolutions and 100 units on 28×28 images), then the classes."""
    side, channels, layers = image_shape[0], image_shape[2], []
    width = image_shape[1]
    for i in range(1, config["model"]["conv_layers"] + 1):
        stride = 2 if i % 3 == 0 else 1
        side, width = _side_after(side, stride), _side_after(width, stride)
        layers.append(Layer("conv", (3, 3, channels, 4 * i), (side, width, 4 * i), stride))
        channels = 4 * i
    units = config["model"]["dense_units"]
    layers.append(Layer("dense", (side * width * channels, units), (units,)))
    return Architecture("stack", tuple(image_shape), (*layers, _output_layer(units, classes)))


convnet.SIZE_KEYS = ("model.conv_layers", "model.dense_units", "train.batch_size")


def resnet(config: dict, image_shape: tuple[int, int, int], classes: int) -> Architecture:
    """Residual blocks (bn_lab.nets.resnet builds them). The layers in forward order: the stem; per block conv₁, conv₂ and, where the block changes
    the shape, its 1×1 shortcut; the classifier."""
    width, stem_stride = config["model"]["width"], config["model"]["stem_stride"]
    height, side = _side_after(image_shape[0], stem_stride), _side_after(image_shape[1], stem_stride)
    # Not activated: the skip path starts from the normalized stem (unit variance with BN).
    layers = [Layer("conv", (3, 3, image_shape[2], width), (height, side, width), stem_stride, STEM, False)]
    channels, block = width, 0
    for stage, count in enumerate(config["model"]["blocks"]):
        out = width * 2**stage
        for b in range(count):
            block += 1
            stride = 2 if stage > 0 and b == 0 else 1
            height, side = _side_after(height, stride), _side_after(side, stride)
            shape = (height, side, out)
            layers.append(Layer("conv", (3, 3, channels, out), shape, stride, role=BRANCH, block=block))
            layers.append(Layer("conv", (3, 3, out, out), shape, role=BRANCH_END, activated=False, block=block))
            if stride != 1 or channels != out:
                layers.append(Layer("conv", (1, 1, channels, out), shape, stride, SHORTCUT, False, block))
            channels = out
    return Architecture("resnet", tuple(image_shape), (*layers, _output_layer(channels, classes)))


resnet.SIZE_KEYS = ("model.blocks", "model.width", "model.stem_stride", "train.batch_size")
resnet.RESIDUAL = True  # its layers have residual roles: residual normalizers and probes apply


def residual_models() -> list[str]:
    """The models (registry.MODELS) whose declarations say RESIDUAL: where residual normalizers and probes apply."""
    return [name for name in registry.MODELS if getattr(registry.MODELS.get(name), "RESIDUAL", False)]


def declare(config: dict, image_shape: tuple[int, int, int], classes: int) -> Architecture:
    """The configured model (registry.MODELS) for images of this shape and these classes."""
    return registry.MODELS.get(config["model"]["name"])(config, tuple(image_shape), classes)
