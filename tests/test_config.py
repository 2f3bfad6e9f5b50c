import pytest
import yaml

from bn_lab import config
from tests.conftest import CONFIGS


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text, overrides=None):
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as info:
        config.load(path, overrides)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_defaults_are_the_mlp_lesson():
    c = config.validate({})
    assert c["model"] == {"name": "mlp", "activation": "relu", "hidden_units": [100, 100, 100],
                          "conv_layers": 19, "dense_units": 100}
    assert (c["bn"]["momentum"], c["bn"]["epsilon"]) == (0.99, 0.001)
    assert (c["train"]["batch_size"], c["train"]["steps"], c["train"]["eval_every"]) == (60, 50000, 500)
    assert c["optimizer"] == {"name": "sgd", "learning_rate": 0.01}


def test_unknown_key_suggests_the_closest(tmp_path):
    assert "unknown key 'optimizer.learning_rte' (did you mean 'optimizer.learning_rate'?)" in error_of(
        tmp_path, "optimizer: {learning_rte: 0.1}"
    )
    # A bare leaf name finds its section.
    assert "did you mean 'model.activation'?" in error_of(tmp_path, "activation: relu")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("optimizer: {learning_rate: 0}", "optimizer.learning_rate must be > 0, got 0"),
        ("optimizer: {learning_rate: -1}", "optimizer.learning_rate must be > 0, got -1"),
        ("optimizer: {learning_rate: fast}", "optimizer.learning_rate must be float, got 'fast'"),
        ("train: {steps: 2.5}", "train.steps must be int, got 2.5"),
        ("train: {steps: true}", "train.steps must be int, got True"),
        ("model: {activation: swish}", "model.activation: unknown value 'swish'; allowed: relu, sigmoid, tanh, elu"),
        ("bn: {backend: torch}", "bn.backend: unknown value 'torch'; allowed: keras, tf_nn, manual"),
        ("model: {name: resnet}", "model.name: unknown value 'resnet'; allowed: mlp, convnet"),
        ("bn: {momentum: 1.5}", "bn.momentum must be strictly between 0 and 1, got 1.5"),
        ("train: {batch_size: 60000}", "train.batch_size 60000 is larger than the training set (55000 images)"),
        ("train: {batch_size: 100}\ndata: {train_limit: 50}", "train.batch_size 100 is larger than the training set (50 images)"),
        ("data: {val_limit: 6000}", "data.val_limit must be <= 5000"),
        ("data: {source: idx}", "data.source is 'idx' but data.idx_dir is not set"),
        ("experiment: 'a b'", "experiment may contain only letters"),
        ("seed: null", "seed must not be empty"),
    ],
)
def test_impossible_values_are_one_clear_line(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_not_yaml_and_not_a_mapping(tmp_path):
    assert "not valid YAML at line 2 (mapping values are not allowed here)" in error_of(
        tmp_path, "seed: 1\nmodel: name: mlp\n"
    )
    assert "must be a mapping" in error_of(tmp_path, "- 1\n- 2\n")
    with pytest.raises(config.ConfigError, match="missing.yaml: no such file"):
        config.load(tmp_path / "missing.yaml")


def test_set_overrides_parse_as_yaml_and_are_validated(tmp_path):
    path = write(tmp_path, "experiment: x\n")
    overrides = dict(config.parse_override(t) for t in ["optimizer.learning_rate=2", "model.hidden_units=[10, 20]", "data.train_limit=null"])
    c = config.load(path, overrides)
    assert c["optimizer"]["learning_rate"] == 2.0 and isinstance(c["optimizer"]["learning_rate"], float)
    assert c["model"]["hidden_units"] == [10, 20]
    assert c["experiment"] == "x"
    with pytest.raises(config.ConfigError, match=r"\(with --set\): optimizer.learning_rate must be > 0"):
        config.load(path, {"optimizer.learning_rate": -2})
    with pytest.raises(config.ConfigError, match="unknown key 'optimiser.learning_rate'"):
        config.load(path, {"optimiser.learning_rate": 1})
    with pytest.raises(config.ConfigError, match="expected key=value"):
        config.parse_override("optimizer.learning_rate")


def test_resolved_config_round_trips_through_yaml():
    c = config.load(CONFIGS / "convnet_keras.yaml")
    assert config.validate(yaml.safe_load(config.dump(c))) == c
    assert config.digest(c) == config.digest(config.validate(yaml.safe_load(config.dump(c))))
    assert config.digest(c) != config.digest(config.load(CONFIGS / "convnet_tf_nn.yaml"))


def test_every_shipped_config_is_valid_and_named_after_its_file():
    for path in sorted(CONFIGS.glob("*.yaml")):
        if path.name.startswith("sweep_"):
            continue
        c = config.load(path)
        assert c["experiment"] == path.stem, path


def test_configs_cover_every_experiment_in_the_spec():
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    grid = {
        f"{act}_lr{lr}_{init}init" for act in ("relu", "sigmoid") for lr in ("0.01", "1", "2") for init in ("good", "bad")
    }
    assert grid <= names
    assert {"relu_lr0.01_goodinit_short", "sigmoid_lr1_goodinit_short", "sigmoid_lr2_goodinit_short"} <= names
    assert {"inference_demo", "smoke", "convnet_keras", "convnet_tf_nn", "convnet_manual"} <= names
    placements = {config.load(CONFIGS / f"{n}.yaml")["bn"]["placement"] for n in names if n.startswith("convnet_")}
    assert placements == set(config.PLACEMENTS)
    bad = config.load(CONFIGS / "relu_lr2_badinit.yaml")
    assert (bad["init"]["scale"], bad["optimizer"]["learning_rate"], bad["model"]["activation"]) == (5.0, 2.0, "relu")
    conv = config.load(CONFIGS / "convnet_manual.yaml")
    assert (conv["optimizer"]["name"], conv["train"]["batch_size"], conv["train"]["steps"], conv["loss"]) == (
        "adam", 64, 800, "sigmoid_cross_entropy")
    assert conv["bn"]["backend"] == "manual"
