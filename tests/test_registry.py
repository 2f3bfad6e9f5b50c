"""The registries are the only lists: what config, CLI and training accept is what they hold."""

import pytest

from bn_lab import api, registry
from bn_lab.config import loading as config
from bn_lab.config.fields import FIELDS
from bn_lab.config.yaml_io import ConfigError
from bn_lab.nets.bn import manual
from bn_lab.training import objectives
from tests.conftest import tiny_mlp_config

pytestmark = pytest.mark.tensorflow  # its tests build TensorFlow tensors

ALL = [
    registry.MODELS,
    registry.BN_BACKENDS,
    registry.ACTIVATIONS,
    registry.OPTIMIZERS,
    registry.LOSSES,
    registry.DATA_SOURCES,
    registry.EXECUTORS,
]


@pytest.mark.parametrize("table", ALL, ids=lambda t: t.kind)
def test_every_registered_name_resolves_and_an_unknown_one_is_refused(table):
    for name in table:
        table.get(name)  # imports it: a wrong "module:attribute" fails here
    with pytest.raises(ValueError, match=f"unknown {table.kind} 'nope'; allowed: {', '.join(table.names())}"):
        table.get("nope")


def test_config_choices_are_the_registries():
    assert FIELDS["bn.backend"].choices == registry.BN_BACKENDS.names()
    assert FIELDS["data.source"].choices == registry.DATA_SOURCES.names()
    with pytest.raises(ConfigError, match="optimizer.name: unknown value 'rmsprop'; allowed: sgd, adam"):
        config.validate({"optimizer": {"name": "rmsprop"}})


def test_an_unknown_optimizer_or_loss_never_falls_through_to_another():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; allowed: sgd, adam"):
        objectives.make_optimizer({"optimizer": {"name": "rmsprop", "learning_rate": 0.1}})
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        objectives.loss_function("hinge")


class RenamedBatchNorm(manual.BatchNorm):
    """A fourth backend, as a user would add one: here `manual`'s arithmetic under a new name."""


@pytest.fixture
def fourth_backend():
    registry.BN_BACKENDS.register("fourth", f"{__name__}:RenamedBatchNorm")
    yield "fourth"
    registry.BN_BACKENDS.unregister("fourth")


@pytest.mark.slow
def test_a_fourth_bn_backend_is_one_registry_line(fourth_backend, tmp_path):
    runs = {
        backend: api.run(tiny_mlp_config(**{"bn.backend": backend}), out=tmp_path / backend, progress="none")
        for backend in (fourth_backend, "manual")
    }
    assert runs["fourth"].config["bn"]["backend"] == "fourth"
    assert "fourth" in FIELDS["bn.backend"].choices
    # It trained, through config validation, the model and the trainer: the same arithmetic as
    # `manual`, so the same numbers to the last bit.
    assert (runs["fourth"].path / "metrics.csv").read_bytes() == (runs["manual"].path / "metrics.csv").read_bytes()
    assert runs["fourth"].summary["variants"]["with_bn"]["outcome"] == "learned"


def plain_sgd(learning_rate):  # an optimizer as a user might register one, without norm_power
    return objectives.sgd(learning_rate)


def test_an_optimizer_without_norm_power_is_a_clear_error_for_the_diagnostics():
    registry.OPTIMIZERS.register("mine", f"{__name__}:plain_sgd")
    try:
        with pytest.raises(ValueError, match="optimizer 'mine' has no norm_power .* or diagnostics.enabled: false"):
            objectives.effective_lr_norm_power({"optimizer": {"name": "mine"}})
    finally:
        registry.OPTIMIZERS.unregister("mine")
    assert objectives.effective_lr_norm_power({"optimizer": {"name": "adam"}}) == 1
