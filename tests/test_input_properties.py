"""Any input is a valid config or one clear line: random YAML trees, --set strings and grids (hypothesis).

The functions under test are the ones the CLI calls before anything slow starts: they must
return a resolved config (or sweep) or raise ConfigError/SweepError with a one-line message,
never another exception (a traceback for the user). No TensorFlow is imported here.
"""

import functools
import string

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bn_lab.config import loading as config
from bn_lab.config import yaml_io
from bn_lab.config.fields import FIELDS, MAX_SEED
from bn_lab.config.names import name_problem
from bn_lab.config.yaml_io import ConfigError, SweepError
from bn_lab.sweeps import spec as sweeps

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = list(FIELDS) + config.sections() + ["", "lerning_rate", "model.activaton", "x.y.z", "seed.extra"]
# Text with what breaks naive code: line breaks of every kind, surrogates (non-UTF-8 argv), '=' and '.'.
TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=12) | st.sampled_from(
    ["relu", "1e-3", "1e+06", "-1", "nan", ".inf", "[1, 2]", "{a: 1}", "\udcff", "a\nb", "\u2028", "..", "."]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)
TREES = st.dictionaries(st.sampled_from(KEYS) | TEXT, VALUES, max_size=6)


def one_line_error(error: Exception) -> None:
    message = str(error)
    assert message and len(message.splitlines()) == 1, repr(message)
    message.encode("utf-8")  # printable as it is


def check(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except ConfigError as e:  # SweepError is one too
        one_line_error(e)
        return None


def dump(tree) -> str:
    return yaml.safe_dump(tree, allow_unicode=True)


@SETTINGS
@given(TREES)
def test_any_tree_validates_or_is_one_line(tree):
    resolved = check(config.validate, tree)
    if resolved is not None:
        assert config.validate(resolved) == resolved  # a resolved config is a fixed point


@SETTINGS
@given(TREES)
def test_any_config_file_loads_or_is_one_line(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    try:
        path.write_text(dump(tree), encoding="utf-8", errors="surrogateescape")
    except (yaml.YAMLError, UnicodeEncodeError):
        assume(False)
    check(config.load, path)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_as_a_config_file_load_or_are_one_line(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("raw") / "config.yaml"
    path.write_bytes(raw)
    check(config.load, path)


@SETTINGS
@given(st.lists(TEXT | st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS) | TEXT, TEXT), max_size=4))
def test_any_set_strings_apply_or_are_one_line(tmp_path_factory, texts):
    base = tmp_path_factory.mktemp("set") / "base.yaml"
    base.write_text("experiment: prop\n")

    def load():
        overrides = dict(config.parse_override(t) for t in texts)
        return config.load(base, overrides)

    check(load)


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(["name", "base", "set", "grid", "seeds", "other"]), VALUES, max_size=5),
    st.dictionaries(st.sampled_from(KEYS) | TEXT, VALUES, max_size=3),
)
def test_any_sweep_file_expands_or_is_one_line(tmp_path_factory, tree, grid):
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "base.yaml").write_text("experiment: prop\ntrain: {steps: 10}\n")
    tree = dict(tree)
    if "grid" not in tree or not isinstance(tree["grid"], dict):
        tree["grid"] = grid
    tree.setdefault("base", "base.yaml")
    path = folder / "sweep.yaml"
    try:
        path.write_text(dump(tree), encoding="utf-8", errors="surrogateescape")
    except (yaml.YAMLError, UnicodeEncodeError):
        assume(False)
    found = check(sweeps.load, path)
    if found is not None:
        names = [c.name for c in found.cells]
        assert len(set(names)) == len(names)  # two cells never share a name
        assert all(name_problem(n) is None for n in names)


@SETTINGS
@given(st.sampled_from(KEYS), st.lists(TEXT | st.floats() | st.integers(), min_size=1, max_size=4))
def test_any_grid_argument_expands_or_is_one_line(key, values):
    argument = f"{key}=" + ",".join(str(v) for v in values)
    check(lambda: sweeps.load(config.Path(__file__).parent.parent / "configs" / "smoke.yaml", [argument]))


@SETTINGS
@given(st.lists(st.floats(min_value=1e-12, max_value=1e12, allow_nan=False), min_size=2, max_size=5, unique=True))
def test_different_learning_rates_get_different_honest_cell_names(rates):
    argument = "optimizer.learning_rate=" + ",".join(repr(r) for r in rates)
    found = sweeps.load(config.Path(__file__).parent.parent / "configs" / "smoke.yaml", [argument])
    names = [c.point for c in found.cells]
    assert len(set(names)) == len(rates)
    for name, rate in zip(names, rates):
        assert float(name.removeprefix("lr")) == rate  # the name is the value, exactly


def test_identifiers_cover_printable_ascii():
    assert name_problem(string.ascii_letters + string.digits + "_.-") is None


# Mostly valid configs whose strings look like other YAML types (1e5, null, 0x10, a date).
LOOKALIKES = st.sampled_from(["1e5", "1E6", "1e+06", "-2.5e-4", "null", "true", "0x10", "1_000", "12:30", "2024-01-01"])
NAMES = LOOKALIKES.filter(lambda n: name_problem(n) is None) | st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)
SAVED = st.fixed_dictionaries(
    {},
    optional={
        "experiment": NAMES,
        "description": LOOKALIKES | TEXT,
        "data.idx_dir": LOOKALIKES | TEXT | st.none(),
        "optimizer.learning_rate": st.floats(1e-300, 1e300),
        "init.scale": st.floats(1e-300, 1e300) | st.integers(1, 10**30),
        "seed": st.integers(0, MAX_SEED),
    },
)


@SETTINGS
@given(SAVED)
def test_a_resolved_config_reads_back_from_its_config_yaml(tmp_path_factory, flat):
    resolved = check(config.validate, config.unflatten(flat))
    assume(resolved is not None)  # a name like '..', text with undecodable bytes
    path = tmp_path_factory.mktemp("saved") / "config.yaml"
    path.write_text(yaml_io.dump(resolved), encoding="utf-8")
    assert config.load(path) == resolved  # `bnlab run results/.../config.yaml` runs the same config


# --- sweep.json, as `bnlab report` reads it ----------------------------------------------------

SMOKE = config.Path(__file__).parent.parent / "configs" / "smoke.yaml"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(TEXT | st.sampled_from(["key", "labels"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@functools.cache
def _good_manifest() -> str:
    grid = ["model.activation=relu,sigmoid", "init.scale=good:0.05,bad:5", "optimizer.learning_rate=1e-6,2"]
    return config.json.dumps(sweeps.load(SMOKE, grid, seeds=[0, 1]).manifest())


def good_manifest() -> dict:
    """A real sweep's manifest (built once: 16 validated cells), a fresh copy each time."""
    return config.json.loads(_good_manifest())


def mutated(manifest, path: list[int], value):
    """The manifest with the part that `path` picks (an index into keys or items at each level) replaced."""
    if not path or not isinstance(manifest, (dict, list)) or not manifest:
        return value
    keys = list(manifest) if isinstance(manifest, dict) else list(range(len(manifest)))
    key = keys[path[0] % len(keys)]
    copy = dict(manifest) if isinstance(manifest, dict) else list(manifest)
    copy[key] = mutated(manifest[key], path[1:], value)
    return copy


def read_report(sweep_dir):
    """What `bnlab report` reads and computes before it writes anything."""
    from bn_lab.report import sweep_figures as report_figures
    from bn_lab.report import sweep_results, sweep_table

    results = sweep_results.collect(sweep_dir)
    sweep_table.summary_columns(results.manifest), sweep_table.summary_rows(results)
    sweep_table.markdown_table(sweep_table.table(results, 0.9)), report_figures.figure_grid(results)
    return results


@SETTINGS
@given(st.lists(st.integers(0, 50), max_size=5), JSON)
def test_any_damaged_sweep_json_reports_or_is_one_line(tmp_path_factory, path, value):
    sweep_dir = tmp_path_factory.mktemp("report")
    (sweep_dir / "sweep.json").write_text(config.json.dumps(mutated(good_manifest(), path, value)))
    check(read_report, sweep_dir)


def test_a_whole_sweep_json_is_read(tmp_path):
    (tmp_path / "sweep.json").write_text(config.json.dumps(good_manifest()))
    assert len(read_report(tmp_path).manifest["cells"]) == 16


def test_sweep_json_of_the_wrong_shape_names_what_is_wrong(tmp_path):
    manifest = good_manifest()
    damaged = {
        "no labels": {**manifest, "axes": [{k: v for k, v in a.items() if k != "labels"} for a in manifest["axes"]]},
        "unknown key": {**manifest, "axes": [{**manifest["axes"][0], "key": "model.activaton"}] + manifest["axes"][1:]},
        "unnameable value": {
            **manifest,
            "axes": [{**manifest["axes"][0], "values": ["a/b", "sigmoid"]}] + manifest["axes"][1:],
        },
        "no base": {k: v for k, v in manifest.items() if k != "base"},
        "set a list": {**manifest, "set": [1]},
    }
    expected = {
        "no labels": "axes[0] needs key, values, labels",
        "unknown key": "axes[0] key 'model.activaton' is not a config key",
        "unnameable value": "axes[0] has a value no cell name can hold",
        "no base": "'base' must be a str",
        "set a list": "'set' must be an object",
    }
    for case, content in damaged.items():
        sweep_dir = tmp_path / case.replace(" ", "_")
        sweep_dir.mkdir()
        (sweep_dir / "sweep.json").write_text(config.json.dumps(content))
        with pytest.raises(SweepError) as caught:
            read_report(sweep_dir)
        assert str(caught.value) == (
            f"{sweep_dir / 'sweep.json'}: not a bn_lab sweep manifest ({expected[case]}); rerun `bnlab sweep` to rewrite it"
        )
