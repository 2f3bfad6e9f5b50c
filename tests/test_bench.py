"""scripts/bench.py's FLOP limit: a training step's operations, counted from the networks' shapes."""

import importlib.util

from tests.conftest import CONFIGS, ROOT


def bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_training_step_is_three_forward_passes_of_multiply_adds():
    flops = bench().training_flops
    # The conv net, by hand: conv layer i has 4i filters of 3x3x4(i-1) (the first: x1), its map
    # halves (rounding up) at every third layer; then dense 76*1*1 -> 100 -> 10; batch 64.
    side, channels, forward = 28, 1, 0
    for i in range(1, 20):
        side = -(-side // 2) if i % 3 == 0 else side
        forward += 2 * side * side * 9 * channels * 4 * i
        channels = 4 * i
    forward += 2 * (side * side * channels * 100 + 100 * 10)
    assert flops(CONFIGS / "convnet_keras.yaml") == 3 * 64 * forward
    assert 1.27e9 < 3 * 64 * forward < 1.29e9  # the 1.28 GFLOP a step
    # The MLP: 784-100-100-100-10, batch 60.
    assert flops(CONFIGS / "relu_lr0.01_goodinit.yaml") == 3 * 60 * 2 * (784 * 100 + 100 * 100 * 2 + 100 * 10)
