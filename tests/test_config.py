import json

import pytest
import yaml

from bn_lab.config import loading as config
from bn_lab.config.arms import PLACEMENTS
from bn_lab.config.yaml_io import ConfigError, dump, parse_yaml
from tests.conftest import CONFIGS


def write(tmp_path, text: str | bytes, name="c.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def error_of(tmp_path, text, overrides=None):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path, overrides)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_defaults_are_the_mlp_lesson():
    c = config.validate({})
    assert c["model"] == {
        "name": "mlp",
        "activation": "relu",
        "hidden_units": [100, 100, 100],
        "conv_layers": 19,
        "dense_units": 100,
        "blocks": [2, 2],
        "width": 16,
        "stem_stride": 1,
    }
    assert c["data"]["dataset"] == "mnist" and c["data"]["validation_size"] == 5000
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
        (
            "model: {activation: swish}",
            "model.activation: unknown value 'swish'; allowed: relu, sigmoid, tanh, elu, linear",
        ),
        ("bn: {backend: torch}", "bn.backend: unknown value 'torch'; allowed: keras, tf_nn, manual"),
        ("model: {name: densenet}", "model.name: unknown value 'densenet'; allowed: mlp, convnet, resnet"),
        ("bn: {momentum: 1.5}", "bn.momentum must be strictly between 0 and 1, got 1.5"),
        ("train: {batch_size: 60000}", "train.batch_size 60000 is larger than the training set (55000 images)"),
        (
            "train: {batch_size: 100}\ndata: {train_limit: 50}",
            "train.batch_size 100 is larger than the training set (50 images)",
        ),
        ("data: {val_limit: 6000}", "data.val_limit must be <= 5000"),
        ("data: {source: idx}", "data.source is 'idx' but data.idx_dir is not set"),
        ("experiment: 'a b'", "experiment may contain only letters"),
        ("seed: null", "seed must not be empty"),
        # Checked as the networks use them, in float32 (issue 33).
        (
            "bn: {epsilon: 1.0e-45}",
            "bn.epsilon must be > 0 in float32, the networks' precision (1e-45 is 0.0 there), got 1e-45",
        ),
        (
            "bn: {momentum: 0.999999999}",
            "bn.momentum must be strictly between 0 and 1 in float32, the networks' precision (0.999999999 is 1.0",
        ),
        ("optimizer: {learning_rate: 1.0e-50}", "optimizer.learning_rate must be > 0 in float32, the networks'"),
        (
            "optimizer: {learning_rate: 1.0e+39}",
            "optimizer.learning_rate must be at most 3.403e+38 in magnitude in float32, the networks' precision",
        ),
        ("init: {scale: 1.0e-300}", "init.scale must be in (0, 1000] (the lesson's bad init is 5) in float32"),
        (
            "arms: [{name: g, normalizer: group_norm, options: {epsilon: 1.0e-45, groups: 4}}]",
            "arms[0] (g): group_norm: epsilon must be > 0, got 0.0 in float32, the networks' precision",
        ),
        # Evaluations in batches of the training size need one (issue 33).
        (
            "data: {val_limit: 59}",
            "data.val_limit 59 is smaller than train.batch_size 60: the batch-statistics evaluation of with_bn "
            "(population statistics) needs a batch of the training size; raise data.val_limit or set "
            "batch_stats.enabled: false",
        ),
        (
            "data: {test_limit: 50}\ntrain: {single_samples: 10}",
            "data.test_limit 50 is smaller than train.batch_size 60: the batch-size curve of with_bn (population "
            "statistics) needs a batch of the training size; raise data.test_limit",
        ),
        # What config.yaml records is what was measured (issue 33).
        (
            "diagnostics: {enabled: false, ics: true}",
            "diagnostics.ics needs diagnostics.enabled: true, and it is false; set diagnostics.enabled: true or "
            "diagnostics.ics: false",
        ),
        ("diagnostics: {enabled: false, landscape: true}", "diagnostics.landscape needs diagnostics.enabled: true"),
    ],
)
def test_impossible_values_are_one_clear_line(tmp_path, text, expected):
    assert expected in error_of(tmp_path, text)


def test_not_yaml_and_not_a_mapping(tmp_path):
    assert "not valid YAML at line 2 (mapping values are not allowed here)" in error_of(
        tmp_path, "seed: 1\nmodel: name: mlp\n"
    )
    assert "must be a mapping" in error_of(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="missing.yaml: no such file"):
        config.load(tmp_path / "missing.yaml")


def test_set_overrides_parse_as_yaml_and_are_validated(tmp_path):
    path = write(tmp_path, "experiment: x\n")
    overrides = dict(
        config.parse_override(t)
        for t in ["optimizer.learning_rate=2", "model.hidden_units=[10, 20]", "data.train_limit=null"]
    )
    c = config.load(path, overrides)
    assert c["optimizer"]["learning_rate"] == 2.0 and isinstance(c["optimizer"]["learning_rate"], float)
    assert c["model"]["hidden_units"] == [10, 20]
    assert c["experiment"] == "x"
    with pytest.raises(ConfigError, match=r"\(with --set\): optimizer.learning_rate must be > 0"):
        config.load(path, {"optimizer.learning_rate": -2})
    with pytest.raises(ConfigError, match="unknown key 'optimiser.learning_rate'"):
        config.load(path, {"optimiser.learning_rate": 1})
    with pytest.raises(ConfigError, match="expected key=value"):
        config.parse_override("optimizer.learning_rate")


def test_resolved_config_round_trips_through_yaml():
    c = config.load(CONFIGS / "convnet_keras.yaml")
    assert config.validate(yaml.safe_load(dump(c))) == c
    assert config.digest(c) == config.digest(config.validate(yaml.safe_load(dump(c))))
    assert config.digest(c) != config.digest(config.load(CONFIGS / "convnet_tf_nn.yaml"))


def test_every_shipped_config_is_valid_and_named_after_its_file():
    for path in sorted(CONFIGS.glob("*.yaml")):
        if path.name.startswith("sweep_"):
            continue
        c = config.load(path)
        assert c["experiment"] == path.stem, path


def test_configs_cover_every_experiment_in_the_spec():
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    # Each cell of the lesson's grid (and its short runs) holds what its name says: the activation,
    # the learning rate, the init's scale (good 0.05, bad 5), 50,000 batches of 60 (short: 2,000).
    for act in ("relu", "sigmoid"):
        for lr in ("0.01", "1", "2"):
            for init, scale in (("good", 0.05), ("bad", 5.0)):
                for short in ("", "_short"):
                    name = f"{act}_lr{lr}_{init}init{short}"
                    if short and name not in (
                        "relu_lr0.01_goodinit_short",
                        "sigmoid_lr1_goodinit_short",
                        "sigmoid_lr2_goodinit_short",
                    ):
                        continue
                    c = config.load(CONFIGS / f"{name}.yaml")
                    assert (c["model"]["activation"], c["optimizer"]["learning_rate"], c["init"]["scale"]) == (
                        act,
                        float(lr),
                        scale,
                    ), name
                    assert (c["train"]["batch_size"], c["train"]["steps"]) == (60, 2000 if short else 50000), name
                    assert (c["model"]["name"], c["model"]["hidden_units"], c["optimizer"]["name"]) == (
                        "mlp",
                        [100, 100, 100],
                        "sgd",
                    ), name
    assert {"inference_demo", "smoke", "convnet_keras", "convnet_tf_nn", "convnet_manual"} <= names
    paper = config.load(CONFIGS / "paper_fig1.yaml")  # the paper's section 4.1 setup
    assert (paper["model"]["activation"], paper["model"]["hidden_units"]) == ("sigmoid", [100, 100, 100])
    assert (paper["train"]["batch_size"], paper["train"]["steps"], paper["diagnostics"]["paper_figure"]) == (
        60,
        50000,
        True,
    )
    assert config.load(CONFIGS / "landscape_relu_lr0.8.yaml")["diagnostics"]["landscape"] is True
    placements = {config.load(CONFIGS / f"{n}.yaml")["bn"]["placement"] for n in names if n.startswith("convnet_")}
    assert placements == set(PLACEMENTS)
    bad = config.load(CONFIGS / "relu_lr2_badinit.yaml")
    assert (bad["init"]["scale"], bad["optimizer"]["learning_rate"], bad["model"]["activation"]) == (5.0, 2.0, "relu")
    conv = config.load(CONFIGS / "convnet_manual.yaml")
    assert (conv["optimizer"]["name"], conv["train"]["batch_size"], conv["train"]["steps"], conv["loss"]) == (
        "adam",
        64,
        800,
        "sigmoid_cross_entropy",
    )
    assert conv["bn"]["backend"] == "manual"


# --- issue 8: every bad input is one clear line -------------------------------------------------


def error(function, *args) -> str:
    with pytest.raises(ConfigError) as caught:
        function(*args)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    return message


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../up", "sp ace"])
def test_a_name_that_becomes_a_path_component_is_checked(tmp_path, name):
    path = write(tmp_path, f"experiment: {json.dumps(name)}\n")
    assert error(config.load, path).startswith(f"{path}: experiment ")


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = write(tmp_path, b"experiment: caf\xe9\n")
    assert error(config.load, path) == f"{path}: not UTF-8 text (byte 0xe9 at line 1); save it as UTF-8"


def test_scientific_notation_is_a_float_in_files_and_in_set(tmp_path):
    path = write(tmp_path, "optimizer: {learning_rate: 1e-3}\nbn: {epsilon: 1E-5}\n")
    resolved = config.load(path, dict([config.parse_override("bn.momentum=9.9e-1")]))
    assert (resolved["optimizer"]["learning_rate"], resolved["bn"]["epsilon"], resolved["bn"]["momentum"]) == (
        1e-3,
        1e-5,
        0.99,
    )
    assert config.parse_override("optimizer.learning_rate=1e6") == ("optimizer.learning_rate", 1e6)
    assert config.parse_override("seed=2") == ("seed", 2)  # ints stay ints


def test_a_non_utf8_argument_is_refused_before_training():
    undecodable = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of such an argv
    message = error(config.validate, {"description": undecodable})
    assert message == r"config: description must be UTF-8 text, got 'caf\udce9'"


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "model: {hidden_units: [10000000, 10000000]}",
            "model.hidden_units must be a non-empty list of at most 64 integers in 1..4096, got [10000000, 10000000]",
        ),
        ("model: {name: convnet, conv_layers: 1000}", "model.conv_layers must be in 1..40, got 1000"),
        ("train: {steps: 100000000000}", "train.steps must be in 1..10,000,000, got 100000000000"),
        (
            "train: {steps: 5000000, batch_size: 55000}",
            "train.steps x train.batch_size must be <= 50,000,000 (the batch order is precomputed, 4 bytes an index), "
            "got 5,000,000 x 55,000",
        ),
    ],
)
def test_sizes_have_upper_bounds(tmp_path, text, expected):
    path = write(tmp_path, text + "\n")
    assert error(config.load, path) == f"{path}: {expected}"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model: 5", "model is a section, a mapping of its keys (model.name, model.activation"),
        ("lerning_rate: 1", "unknown key 'lerning_rate' (did you mean 'optimizer.learning_rate'?)"),
        ("zzz: 1", "unknown key 'zzz'; the top-level keys are experiment, description, seed, model, init, bn,"),
        ("seed: 1\nmodel: {name: mlp}\nseed: 2", "duplicate key 'seed' at line 3; give each key once"),
        ("model:\n  name: mlp\n  name: convnet", "duplicate key 'name' at line 3; give each key once"),
    ],
)
def test_misleading_messages_now_say_what_is_wrong(tmp_path, text, expected):
    path = write(tmp_path, text + "\n")
    assert error(config.load, path).startswith(f"{path}: {expected}")


def test_an_empty_set_key_says_so():
    assert error(config.parse_override, "=3") == (
        "--set =3: the key is empty; expected key=value, e.g. --set optimizer.learning_rate=0.5"
    )


def test_scientific_notation_in_every_spelling_and_ints_stay_ints():
    for text, number in (("1e-3", 1e-3), ("1E6", 1e6), ("1e+06", 1e6), ("-2.5e-4", -2.5e-4), (".5e1", 5.0)):
        assert parse_yaml(text) == number and isinstance(parse_yaml(text), float)
    assert parse_yaml("2") == 2 and isinstance(parse_yaml("2"), int)
    assert parse_yaml("._e3") == "._e3"  # no digit: text, not a float() that fails


def test_a_saved_config_reads_back_the_same_even_with_number_like_strings(tmp_path):
    # config.yaml of a run is a config file too: a name like 1e5 must stay a string when read back.
    resolved = config.validate({"experiment": "1e5", "description": "1e-3\nsecond line\ttab"})
    path = write(tmp_path, dump(resolved))
    assert config.load(path) == resolved


def test_a_section_given_whole_in_set_is_its_keys():
    key, value = config.parse_override("model={name: convnet, conv_layers: 3}")
    resolved = config.validate(config.apply_overrides(config.defaults(), {key: value}))
    assert (resolved["model"]["name"], resolved["model"]["conv_layers"]) == ("convnet", 3)
    assert error(lambda: config.apply_overrides(config.defaults(), {"model": {"nam": "x"}})) == (
        "--set: unknown key 'model.nam' (did you mean 'model.name'?)"
    )


def test_a_set_value_nested_too_deeply_is_one_line(tmp_path):
    key, value = config.parse_override("model.hidden_units=" + "[" * 5000 + "]" * 5000)  # PyYAML recursed: a traceback
    assert key == "model.hidden_units" and isinstance(value, str)
    assert error(config.load, write(tmp_path, "[" * 5000 + "]" * 5000)) == (
        f"{tmp_path / 'c.yaml'}: not valid YAML (nested too deeply)"
    )


def test_names_and_seeds_fit_in_a_directory_name(tmp_path):
    assert error(config.validate, {"experiment": "x" * 201}).startswith(
        "config: experiment must be at most 200 characters long, got 'xxx"
    )
    assert error(config.validate, {"seed": 10**300}).startswith("config: seed must be in 0..4,294,967,295, got 1000")
    assert config.validate({"seed": 2**32 - 1, "experiment": "x" * 200})["seed"] == 2**32 - 1


def test_batch_sized_evaluations_are_only_checked_where_an_arm_has_them():
    config.validate({"data": {"val_limit": 59}, "batch_stats": {"enabled": False}})
    config.validate(
        {"data": {"val_limit": 59, "test_limit": 50}, "train": {"single_samples": 10}, "arms": [{"name": "a"}]}
    )


def test_evaluation_calls_are_sized_to_the_network_unless_set():
    """train.eval_batch_size null: 1,000 conv net images a call (26 M activation values), the MLP's
    whole splits (300 values an image); a number given is kept."""
    from bn_lab.config import footprint

    conv = config.load(CONFIGS / "convnet_keras.yaml")
    mlp = config.load(CONFIGS / "relu_lr2_badinit.yaml")
    assert conv["train"]["eval_batch_size"] is None is mlp["train"]["eval_batch_size"]
    assert footprint.eval_batch_size(conv) == 1000
    assert footprint.eval_batch_size(mlp) == footprint.EVAL_VALUES // 300 > 10_000  # the test split in one call
    set_ = config.load(CONFIGS / "relu_lr2_badinit.yaml", {"train.eval_batch_size": 70})
    assert footprint.eval_batch_size(set_) == 70
