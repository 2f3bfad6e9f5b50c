import numpy as np
import pytest
import tensorflow as tf

from bn_lab.config import arms, declared
from bn_lab.config import loading as config
from bn_lab.data import batches
from bn_lab.nets import network as models
from bn_lab.training import train
from tests.conftest import build_network, initial_weights

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors

MLP = config.validate({"train": {"steps": 100}})


def small_conv(**train):
    return config.validate(
        {
            "model": {"name": "convnet", "conv_layers": 4, "dense_units": 16},
            "init": {"distribution": "truncated_normal", "scale": 0.05},
            "optimizer": {"name": "adam", "learning_rate": 0.002},
            "loss": "sigmoid_cross_entropy",
            "train": {"batch_size": 16, "single_samples": 20, "jit_compile": False, **train},
            "diagnostics": {"enabled": False},  # tests/test_diagnostics.py measures them
        }
    )


def test_convnet_architecture_is_the_exercise():
    c = config.validate({"model": {"name": "convnet"}})
    layers = declared.architecture(c).layers
    shapes = [layer.kernel_shape for layer in layers]
    assert len(shapes) == 21  # 19 convs, dense 100, logits
    assert [s[-1] for s in shapes[:19]] == [4 * i for i in range(1, 20)]
    assert shapes[0] == (3, 3, 1, 4) and shapes[1] == (3, 3, 4, 8)
    assert [layer.stride for layer in layers[:19]] == [2 if i % 3 == 0 else 1 for i in range(1, 20)]
    # 28 -> 14 -> 7 -> 4 -> 2 -> 1 -> 1 with "same" padding; 76 channels left.
    assert shapes[19] == (76, 100) and shapes[20] == (100, 10)


def test_mlp_initial_weights_are_seeded_normal_draws():
    good = initial_weights(MLP)
    assert [w.shape for w in good] == [(784, 100), (100, 100), (100, 100), (100, 10)]
    assert all(w.dtype == np.float32 for w in good)
    assert abs(float(np.concatenate([w.ravel() for w in good]).std()) - 0.05) < 0.001
    bad = initial_weights(config.validate({"init": {"scale": 5.0}}))
    assert abs(float(bad[0].std()) - 5.0) < 0.05
    again = initial_weights(MLP)
    assert all(np.array_equal(a, b) for a, b in zip(good, again))
    other_seed = initial_weights(config.validate({"seed": 1}))
    assert not np.array_equal(good[0], other_seed[0])
    truncated = initial_weights(small_conv())
    assert max(float(np.abs(w).max()) for w in truncated) <= 0.1  # two standard deviations


def test_both_networks_of_a_pair_start_from_the_same_arrays():
    weights = initial_weights(MLP)
    plain = build_network(MLP, weights, arms.named(MLP, "without_bn"))
    with_bn = build_network(MLP, weights, arms.named(MLP, "with_bn"))
    for a, b, w in zip(plain.kernels, with_bn.kernels, weights):
        assert np.array_equal(a.numpy(), w) and np.array_equal(b.numpy(), w)
    # The BN network's hidden layers have no bias (BN's beta takes its place); outputs keep theirs.
    assert [b is None for b in with_bn.biases] == [True, True, True, False]
    assert all(b is not None for b in plain.biases)
    assert len(with_bn.norms) == 3 and not plain.norms


@pytest.mark.parametrize(
    "placement, biases",
    [
        ("before_activation", False),
        ("bias_before_activation", True),
        ("after_activation", True),
        ("after_activation_no_bias", False),
    ],
)
def test_conv_placements(placement, biases):
    c = small_conv()
    c["bn"]["placement"] = placement
    network = build_network(c, initial_weights(c), arms.named(c, "with_bn"))
    assert all((b is not None) == biases for b in network.biases[:-1])
    assert network.bn_after_activation == placement.startswith("after")
    x = tf.random.stateless_uniform((3, 28, 28, 1), seed=(1, 2))
    assert network(x, training=True).shape == (3, 10)


def test_batch_order_is_tf1_next_batch():
    order = batches.batch_order(seed=0, num_examples=10, batch_size=4, steps=6)  # 24 indices: 2.4 epochs
    stream = order.ravel()
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:20])  # each epoch is a fresh shuffle
    assert np.array_equal(order, batches.batch_order(0, 10, 4, 6))
    assert not np.array_equal(order, batches.batch_order(1, 10, 4, 6))


def test_single_image_in_training_mode_gets_the_same_logits_whatever_the_image(mnist_small):
    """The lesson's pitfall: batch statistics of one image are the image itself (variance 0)."""
    c = config.validate({"data": {"train_limit": 2000}})
    network = build_network(c, initial_weights(c), arms.named(c, "with_bn"))
    images = models.to_inputs(mnist_small.test.images[:8], network.input_shape)
    training = np.stack([network(images[i : i + 1], training=True).numpy()[0] for i in range(8)])
    inference = np.stack([network(images[i : i + 1], training=False).numpy()[0] for i in range(8)])
    np.testing.assert_allclose(training, np.broadcast_to(training[0], training.shape), atol=1e-6)
    assert np.ptp(inference, axis=0).max() > 1e-2  # different images, different logits
    # The batch of all eight in training mode is fine: images differ again.
    assert np.ptp(network(images, training=True).numpy(), axis=0).max() > 1e-2


@pytest.mark.slow
def test_trained_pair_single_sample_checks(mnist_small):
    c = config.validate(
        {
            "train": {"steps": 200, "eval_every": 100, "single_samples": 100},
            "optimizer": {"learning_rate": 0.5},
            "data": {"train_limit": 2000, "val_limit": 500, "test_limit": 500},
            "diagnostics": {"enabled": False},
        }
    )
    trainer = train.Trainer(c, mnist_small, initial_weights(c))
    result = trainer.run()
    with_bn, plain = result.arms["with_bn"], result.arms["without_bn"]
    labels = mnist_small.test.labels[:100]
    # Training mode: one class for every image, so accuracy is that class's share (near chance).
    assert len(set(with_bn.predictions_training)) == 1
    assert with_bn.single_sample_training == pytest.approx(np.mean(labels == with_bn.predictions_training[0]))
    assert with_bn.single_sample_training < 0.3
    # Inference mode: close to the batch accuracy on the test split.
    assert with_bn.single_sample_inference > 0.8
    assert abs(with_bn.single_sample_inference - with_bn.test_accuracy) < 0.1
    assert plain.single_sample_training is None and plain.single_sample_inference > 0.7
    # The training-mode check must not change the network's population statistics.
    bn_net = trainer.networks["with_bn"]
    before = [v.numpy() for v in bn_net.population_statistics]
    trainer.single_samples_in_training_mode("with_bn", mnist_small.test.images[:10])
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, bn_net.population_statistics))
    # The run's single-image predictions are those of each image fed alone, a batch of one, to the
    # trained networks (they come from the test evaluation and from groups of one in larger calls).
    images = models.to_inputs(mnist_small.test.images[:20], bn_net.input_shape)
    for arm, training, predicted in (
        ("with_bn", False, with_bn.predictions),
        ("with_bn", True, with_bn.predictions_training),
        ("without_bn", False, plain.predictions),
    ):
        network = trainer.networks[arm]
        with models.kept(network.population_statistics):
            alone = [int(np.argmax(network(images[i : i + 1], training=training).numpy()[0])) for i in range(20)]
        assert predicted[:20] == alone, (arm, training)
    # Evaluations: step 0, 100, 200 on validation for both, then test.
    steps = [(e.variant, e.step, e.split) for e in result.evaluations]
    assert steps[:2] == [("without_bn", 0, "validation"), ("with_bn", 0, "validation")]
    assert ("with_bn", 200, "validation") in steps and ("with_bn", 200, "test") in steps


@pytest.mark.slow
@pytest.mark.parametrize("standardize", [False, True])
def test_checks_convert_a_split_once_as_a_training_step_does(mnist_small, standardize):
    c = config.validate({"data": {"standardize": standardize}, "train": {"steps": 10}})
    trainer = train.Trainer(c, mnist_small, initial_weights(c))
    images = mnist_small.validation.images
    inputs = trainer.checks._inputs(images)
    assert trainer.checks._inputs(images) is inputs  # converted once, whatever reads them
    # The bits a training step's graph gives, and the probes' eager conversion too (to_inputs: a
    # graph rewrites a division by a constant into a multiplication, eager code did not).
    network = trainer.networks["with_bn"]
    in_a_step = tf.function(network.inputs)(images)
    np.testing.assert_array_equal(inputs.numpy(), in_a_step.numpy())
    probe_inputs = trainer.probes["with_bn"].probe_inputs.numpy()  # the first validation images
    np.testing.assert_array_equal(probe_inputs, in_a_step.numpy()[: len(probe_inputs)])
    assert inputs.shape == (len(images), 784)


def test_divergence_is_recorded_and_the_other_variant_completes(mnist_small):
    c = config.validate(
        {
            "init": {"scale": 5.0},
            "optimizer": {"learning_rate": 2.0},
            "train": {"steps": 150, "eval_every": 50, "single_samples": 20},
            "data": {"train_limit": 2000, "val_limit": 500, "test_limit": 500},
            "diagnostics": {"enabled": False},
        }
    )
    result = train.Trainer(c, mnist_small, initial_weights(c)).run()
    plain, with_bn = result.arms["without_bn"], result.arms["with_bn"]
    assert plain.diverged and 1 <= plain.diverged_at_step <= 50
    assert plain.final_val_accuracy is None and plain.test_accuracy is None and plain.predictions is None
    assert not with_bn.diverged and with_bn.steps_trained == 150 and with_bn.test_accuracy is not None
    # No evaluations of the diverged network after it diverged.
    assert all(e.step < plain.diverged_at_step for e in result.evaluations if e.variant == "without_bn")


@pytest.mark.slow
def test_conv_pair_trains_and_logs_training_batches(mnist_small):
    c = small_conv(steps=20, eval_every=10, train_eval_every=5)
    c["data"].update(train_limit=2000, val_limit=500, test_limit=500)
    result = train.Trainer(c, mnist_small, initial_weights(c)).run()
    with_bn = [(e.step, e.split) for e in result.evaluations if e.variant == "with_bn"]
    precise = "validation_precise_bn"  # the BN network again, with exact population statistics
    batch = "validation_batch_stats"  # and in training mode, on batches of the training size
    assert with_bn == [
        (0, "validation"),
        (0, precise),
        (0, batch),
        (5, "train_batch"),
        (10, "training_steps"),  # the steps' own loss and accuracy since the last validation evaluation
        (10, "validation"),
        (10, precise),
        (10, batch),
        (15, "train_batch"),
        (20, "training_steps"),
        (20, "validation"),
        (20, precise),
        (20, batch),
        (20, "test"),
    ]
    assert all(0 <= e.accuracy <= 1 and np.isfinite(e.loss) for e in result.evaluations)
