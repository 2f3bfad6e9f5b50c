"""The networks' shapes, from the config alone (no TensorFlow): the layers of each architecture
(registry.MODELS) and every kernel's shape. models.py builds the networks from them; the memory
estimate (bn_lab.config.footprint) sizes them before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from bn_lab import registry

NUM_CLASSES = 10
IMAGE_SIDE = 28


@dataclass(frozen=True)
class HiddenLayer:
    kind: str  # "dense" or "conv"
    units: int  # output features (filters for conv)
    stride: int = 1


def mlp_layers(config: dict) -> tuple[tuple[int, ...], list[HiddenLayer]]:
    """784 -> hidden_units... -> 10 (the lesson: 100, 100, 100)."""
    units = config["model"]["hidden_units"]
    return (IMAGE_SIDE * IMAGE_SIDE,), [HiddenLayer("dense", u) for u in units]


def convnet_layers(config: dict) -> tuple[tuple[int, ...], list[HiddenLayer]]:
    """19 convs 3x3 with 4*i filters, stride 2 when i % 3 == 0, then dense 100 (the exercise)."""
    convs = [HiddenLayer("conv", 4 * i, 2 if i % 3 == 0 else 1) for i in range(1, config["model"]["conv_layers"] + 1)]
    return (IMAGE_SIDE, IMAGE_SIDE, 1), convs + [HiddenLayer("dense", config["model"]["dense_units"])]


def architecture(config: dict):
    """(input shape, hidden layers) of the configured model (registry.MODELS)."""
    return registry.MODELS.get(config["model"]["name"])(config)


def kernel_shapes(config: dict) -> list[tuple[int, ...]]:
    """Kernel shapes of every layer, hidden then output, in order."""
    input_shape, hidden = architecture(config)
    shapes = []
    features, side = input_shape[-1], IMAGE_SIDE
    flat = len(input_shape) == 1
    for layer in hidden:
        if layer.kind == "conv":
            shapes.append((3, 3, features, layer.units))
            side = -(-side // layer.stride)  # "same" padding: ceil(side / stride)
        else:
            fan_in = features if flat else side * side * features
            shapes.append((fan_in, layer.units))
            flat = True
        features = layer.units
    fan_in = features if flat else side * side * features
    shapes.append((fan_in, NUM_CLASSES))
    return shapes


def hidden_shapes(config: dict) -> list[tuple[int, ...]]:
    """One example's shape at each hidden layer's output: (units,) or (side, side, filters)."""
    _, hidden = architecture(config)
    side, shapes = IMAGE_SIDE, []
    for layer in hidden:
        if layer.kind == "conv":
            side = -(-side // layer.stride)  # "same" padding: ceil(side / stride)
            shapes.append((side, side, layer.units))
        else:
            shapes.append((layer.units,))
    return shapes
