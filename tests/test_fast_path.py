"""Speed does not change what is trained (issue 4).

PairTrainer's fast path (a whole chunk of steps in one tf.while_loop, XLA for the
MLP, both networks of the pair at once, batches gathered in the graph; for the conv
net, build_network(fast=True): tiny convolutions as matmuls, each BN layer's
normalisation + activation XLA-compiled between TensorFlow's convolutions) must end
with the same weights and population statistics as the plainest loop, written here:
one tf.function call per step, no XLA, no loop in the graph, Network(fast=False),
batches sliced in numpy from train.batch_order, same initial weights, optimizer, loss.

Tolerance: RTOL = ATOL = 1e-5, as the backend test (test_bn_backends.py). Everything
is float32; the paths do the same arithmetic in another order (XLA fuses and
re-associates the BN sums, a matmul convolution adds its products in another order),
so each result moves by an ulp or so. Measured largest differences: 3.6e-7 after 20
MLP steps (SGD at lr 0.5, weights of order 0.05-1); 4e-6 after 4 steps of the 16-layer
conv net with BN (SGD, elu); 5e-7 after 6 Adam steps of the conv net without BN.
A real change (a step skipped or repeated, another batch, BN's momentum or epsilon
wrong, Adam's step count not advancing) moves weights by 1e-3 or more.

Where that tolerance cannot work, and why the conv tests use elu + SGD for BN: a
float32 difference of one ulp is amplified by two things in these networks, not by
the fast path. ReLU's kink: a pre-activation within rounding of 0 takes the other
branch, its gradient changes by O(1). Adam: its first steps are about lr * sign(g),
so a gradient that is rounding noise (g ~ 1e-9) gives a +-lr step either way.
Measured on the 16-layer conv net with BN: scaling the initial weights by (1 + 1e-7)
and training with the *same* plain loop moves weights by 3.5e-2 after 4 SGD steps
with relu, by 1.4e-4 after 6 Adam steps with elu, by 1.5e-7 after 4 SGD steps with
elu. So BN's arithmetic is compared with elu + SGD, and Adam on the network without
BN (relu: without BN it is well-conditioned, 5e-7).
"""

import numpy as np
import pytest
import tensorflow as tf

from bn_lab import registry
from bn_lab.config import arms
from bn_lab.config import loading as config
from bn_lab.data import batches
from bn_lab.data import mnist as data
from bn_lab.nets import fast_conv
from bn_lab.training import objectives, train
from tests.conftest import build_network, initial_weights

pytestmark = pytest.mark.slow  # every test here trains

RTOL = ATOL = 1e-5
MLP_STEPS = 20
CONV_STEPS = 4
BACKENDS = registry.BN_BACKENDS.names()


@pytest.fixture(scope="module")
def mnist():
    return data.load_mnist(train_limit=3000, val_limit=100, test_limit=100)


def mlp_config(backend):
    # The lesson's MLP with XLA on, as its configs run it; lr 0.5 so that 20 steps move the weights a lot.
    return config.validate(
        {
            "model": {"name": "mlp", "activation": "relu", "hidden_units": [100, 100, 100]},
            "init": {"distribution": "normal", "scale": 0.05},
            "bn": {"backend": backend},
            "optimizer": {"name": "sgd", "learning_rate": 0.5},
            "train": {"batch_size": 60, "steps": MLP_STEPS, "eval_every": MLP_STEPS, "jit_compile": True},
        }
    )


def conv_config(backend, activation="elu", optimizer="sgd", conv_layers=16):
    # The conv configs' settings (jit_compile false: see configs/convnet_keras.yaml) with 16 conv
    # layers instead of 19: feature maps down to 2x2 and 1x1, where the fast path uses matmuls.
    return config.validate(
        {
            "model": {"name": "convnet", "activation": activation, "conv_layers": conv_layers, "dense_units": 32},
            "init": {"distribution": "glorot_uniform"},
            "bn": {"backend": backend},
            "optimizer": {"name": optimizer, "learning_rate": 0.1 if optimizer == "sgd" else 0.002},
            "loss": "sigmoid_cross_entropy",
            "train": {"batch_size": 16, "steps": CONV_STEPS, "eval_every": CONV_STEPS, "jit_compile": False},
        }
    )


def plain_training(cfg, mnist, weights, variant, steps):
    """One tf.function call per step, no XLA, no loop in the graph; batches from numpy."""
    network = build_network(cfg, weights, arms.named(cfg, variant))
    optimizer = objectives.make_optimizer(cfg)
    loss_fn = objectives.loss_function(cfg["loss"])
    order = batches.batch_order(cfg["seed"], len(mnist.train.labels), cfg["train"]["batch_size"], steps)

    @tf.function(jit_compile=False, autograph=False)  # nothing to convert; converting is slow
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(network(x, training=True), y)
        gradients = tape.gradient(loss, network.parameters)
        optimizer.apply_gradients(zip(gradients, network.parameters))

    for indices in order:
        images = mnist.train.images[indices].astype(np.float32) / np.float32(255.0)
        step(images.reshape((-1,) + tuple(network.input_shape)), mnist.train.labels[indices])
    return network


def state(network):
    return [v.numpy() for v in network.parameters + network.population_statistics]


def largest(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def check_same_training(cfg, mnist, variants, pair=True):
    steps = cfg["train"]["steps"]
    weights = initial_weights(cfg)
    # Both networks at once, as a run trains them (or only the ones compared).
    trainer = train.Trainer(cfg, mnist, weights, **({} if pair else {"arms": tuple(variants)}))
    trainer.train_steps(steps)
    assert trainer.steps_done == steps and not trainer.diverged_at
    for variant in variants:
        fast = state(trainer.networks[variant])
        plain = state(plain_training(cfg, mnist, weights, variant, steps))
        assert len(fast) == len(plain)
        # The comparison proves something only if training moved the weights far beyond the tolerance.
        assert largest(fast[: len(weights)], weights) > 10 * ATOL
        print(
            f"{cfg['model']['name']} {cfg['bn']['backend']} {variant}: largest |fast - plain| {largest(fast, plain):.1e}"
        )
        for got, want in zip(fast, plain):
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# The network without BN does not depend on the backend: it is checked (and the pair trained) once.
@pytest.mark.parametrize("backend", BACKENDS)
def test_mlp_fast_path_trains_what_a_plain_loop_trains(mnist, backend):
    if backend == "keras":
        check_same_training(mlp_config(backend), mnist, ("without_bn", "with_bn"))
    else:
        check_same_training(mlp_config(backend), mnist, ("with_bn",), pair=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_fast_path_trains_what_a_plain_loop_trains(mnist, backend):
    if backend == "keras":
        check_same_training(conv_config(backend), mnist, ("without_bn", "with_bn"))
    else:
        # What depends on the backend is its BN inside the XLA-compiled layer end, the same at every
        # layer: 6 layers of it (maps 28 to 7); the matmul convolutions of the 2x2 and 1x1 maps,
        # the same for every backend, are the keras case's and the test below's.
        check_same_training(conv_config(backend, conv_layers=6), mnist, ("with_bn",), pair=False)


def test_conv_fast_path_with_adam(mnist):
    # The conv configs' optimizer and activation, on the network where rounding is not amplified.
    check_same_training(conv_config("keras", activation="relu", optimizer="adam"), mnist, ("without_bn",), pair=False)


@pytest.mark.parametrize("side, stride", [(1, 1), (1, 2), (2, 1), (2, 2), (3, 2), (4, 1)])
def test_small_convolutions_as_matmuls_are_convolutions(side, stride):
    rng = np.random.default_rng(side * 10 + stride)
    x = tf.constant(rng.normal(size=(5, side, side, 6)).astype(np.float32))
    kernel = tf.constant(rng.normal(size=(3, 3, 6, 7)).astype(np.float32))
    upstream = rng.normal(size=(5, -(-side // stride), -(-side // stride), 7)).astype(np.float32)
    results = []
    for conv in (lambda x, k: tf.nn.conv2d(x, k, stride, "SAME"), lambda x, k: fast_conv.conv_as_matmul(x, k, stride)):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
            loss = tf.reduce_sum(y * upstream)
        results.append([y.numpy(), *[g.numpy() for g in tape.gradient(loss, [x, kernel])]])
    for got, want in zip(*results):  # output, input gradient, kernel gradient; values of order 1-10
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
