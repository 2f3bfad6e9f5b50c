"""The training steps' own loss and accuracy (metrics.csv's `training_steps` rows): the mean over
the steps since the previous validation evaluation, in training mode, on the batches trained on;
recorded at every validation evaluation, from what the steps computed anyway."""

import csv

import numpy as np
import pytest

from bn_lab.config import loading as config
from tests.conftest import initial_weights, numpy_loss_and_accuracy, numpy_mlp, tiny_mlp_config

pytestmark = pytest.mark.slow


def test_the_training_steps_figures_are_the_steps_own_loss_and_accuracy(tmp_path, tiny_mnist):
    """One step per evaluation: each row is the loss and accuracy of that one step's batch at the
    weights before it, training mode, computed here in numpy from the initial weights (step 1)."""
    from bn_lab.data.batches import ResidentBatches
    from bn_lab.training import experiment

    c = config.validate({**tiny_mlp_config(**{"train.steps": 6, "train.eval_every": 3}), "seed": 4})
    experiment.run_experiment(c, tmp_path, progress="none")
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "training_steps"]
    assert [(r["variant"], r["step"]) for r in rows] == [(v, s) for s in ("3", "6") for v in ("without_bn", "with_bn")]
    # The same config, one step per window: step 1's figures from the initial weights, by hand.
    one = config.validate({**tiny_mlp_config(**{"train.steps": 1, "train.eval_every": 1}), "seed": 4})
    experiment.run_experiment(one, tmp_path / "one", progress="none")
    with open(tmp_path / "one" / "metrics.csv", newline="") as f:
        found = {r["variant"]: r for r in csv.DictReader(f) if r["split"] == "training_steps"}
    images, labels = ResidentBatches(one, tiny_mnist.train).at(0)
    kernels = initial_weights(one)
    for variant in ("without_bn", "with_bn"):
        arrays = {f"layer{k}/kernel": w for k, w in enumerate(kernels, start=1)}
        arrays[f"layer{len(kernels)}/bias"] = np.zeros(kernels[-1].shape[1])
        for k, w in enumerate(kernels[:-1], start=1):
            if variant == "with_bn":
                arrays[f"layer{k}/gamma"], arrays[f"layer{k}/beta"] = np.ones(w.shape[1]), np.zeros(w.shape[1])
            else:
                arrays[f"layer{k}/bias"] = np.zeros(w.shape[1])
        logits = numpy_mlp(arrays, images, one["model"]["activation"], one["bn"]["epsilon"], statistics=None)[0]
        loss, accuracy = numpy_loss_and_accuracy(logits, labels)
        assert float(found[variant]["loss"]) == pytest.approx(loss, rel=1e-4), variant
        assert float(found[variant]["accuracy"]) == pytest.approx(accuracy, abs=1 / len(labels)), variant
