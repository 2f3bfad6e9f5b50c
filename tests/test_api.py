"""The Python API takes what its signature says or refuses it in one line, and ends as the CLI
does: a sweep with a cell that did not complete is an exception, as `bnlab` exits 1 (issue 33)."""

import json
import subprocess
import sys

import pytest

import bn_lab
from bn_lab import api
from bn_lab.config import loading as config
from bn_lab.store import rundir
from bn_lab.sweeps import spec
from bn_lab.sweeps.executors.local import SCRIPT_NEEDS_A_GUARD
from tests.conftest import CONFIGS, ROOT, tiny_mlp_config

SMOKE = CONFIGS / "smoke.yaml"


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments, expected",
    [
        ({"seeds": "12"}, "seeds must be a list of seeds, e.g. seeds=[0, 1, 2], got str '12'"),
        ({"seeds": 5}, "seeds must be a list of seeds, e.g. seeds=[0, 1, 2], got int 5"),
        ({"seeds": [0, -1]}, "seeds: must be a non-empty list of non-negative integers, got -1"),
        ({"seeds": [0, 1], "jobs": "2"}, "jobs must be an integer >= 1, got str '2'"),
        ({"jobs": 0}, "jobs must be an integer >= 1, got int 0"),
        ({"jobs": 2}, "jobs is for seeds=[...]: one run trains in this process"),
        ({"out": 123}, "out must be a path (a str or pathlib.Path), got int 123"),
        ({"results": None}, "results must be a path (a str or pathlib.Path), got NoneType None"),
        (
            {"overrides": [("train.steps", 5)]},
            "overrides must be a mapping of config keys to values, e.g. {'train.steps': 500}, got list "
            "[('train.steps', 5)]",
        ),
        ({"force": "yes"}, "force must be True or False, got str 'yes'"),
        ({"progress": "loud"}, "progress 'loud': unknown; allowed: auto, bar, lines, none"),
    ],
)
def test_a_bad_argument_to_run_is_one_line_naming_it(tmp_path, arguments, expected):
    with pytest.raises(config.ConfigError) as error:
        bn_lab.run(SMOKE, **{"results": tmp_path, **arguments})
    assert str(error.value) == expected
    assert list(tmp_path.iterdir()) == []  # refused before anything was claimed


def test_a_bad_argument_to_sweep_is_one_line_naming_it(tmp_path):
    cases = [
        ({"grid": "model.activation=relu,sigmoid"}, "grid must be a list of strings"),
        ({"grid": [1]}, "grid must be a list of strings"),
        ({"seeds": "01"}, "seeds must be a list of seeds"),
        ({"jobs": 1.5}, "jobs must be an integer >= 1, got float 1.5"),
        ({"results": 7}, "results must be a path (a str or pathlib.Path), got int 7"),
        ({"overrides": "train.steps=5"}, "overrides must be a mapping of config keys to values"),
    ]
    for arguments, expected in cases:
        with pytest.raises(config.ConfigError) as error:
            bn_lab.sweep(CONFIGS / "sweep_smoke.yaml", **{"results": tmp_path, **arguments})
        assert str(error.value).startswith(expected), (arguments, str(error.value))
    assert list(tmp_path.iterdir()) == []  # refused before anything was claimed


@pytest.mark.slow
def test_a_sweep_with_a_cell_that_did_not_complete_is_an_exception_with_the_others(tmp_path):
    cfg = tiny_mlp_config()
    out = tmp_path / "seeds"
    out.mkdir()
    # The sweep's own manifest, as one stopped before its cells writes it; a file where seed0's run goes.
    manifest = {**spec.of_seeds(cfg, [0, 1], name="seeds", source="(a mapping)").manifest(), "command_line": "x"}
    (out / rundir.MANIFEST).write_text(json.dumps(manifest))
    (out / "seed0").write_text("in the way")
    with pytest.raises(api.IncompleteSweep) as error:
        bn_lab.run(cfg, seeds=[0, 1], out=out, progress="none")
    assert str(error.value) == (
        f"1 of 2 cells did not complete (failed: seed0; errors in {out / rundir.FAILURES}); run it again to retry them"
    )
    assert list(error.value.sweep.runs) == ["seed1"] and (out / rundir.REPORT).is_file()


# A script that calls bn_lab with jobs > 1 at its top level: each worker process imports it again.
UNGUARDED = """
import sys
import bn_lab
bn_lab.run({config}, seeds=[0, 1], jobs=2, out=sys.argv[1], progress="none")
print("the script went on")
"""


@pytest.mark.slow
def test_a_script_without_a_main_guard_fails_with_the_sentence_that_fixes_it(tmp_path):
    cfg = {
        "train": {"steps": 10, "eval_every": 10, "single_samples": 10},
        "data": {"train_limit": 600, "val_limit": 200, "test_limit": 100},
    }
    script = tmp_path / "script.py"
    script.write_text(UNGUARDED.format(config=cfg))
    done = subprocess.run(
        [sys.executable, script, tmp_path / "out"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 1 and "the script went on" not in done.stdout
    assert done.stderr.strip().splitlines()[-1] == f"bn_lab.config.yaml_io.SweepError: {SCRIPT_NEEDS_A_GUARD}"
    assert f"error: {SCRIPT_NEEDS_A_GUARD}" in done.stderr  # each worker says it too, in one line
    assert 'a script using jobs > 1 needs `if __name__ == "__main__":`' in SCRIPT_NEEDS_A_GUARD
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith("seed")]
    docs = " ".join((ROOT / "docs" / "api.md").read_text().split()).lower()
    assert SCRIPT_NEEDS_A_GUARD.split(" around")[0] in docs  # the docs say the same sentence


def test_docs_api_md_gives_every_functions_signature_as_the_code_has_it():
    """docs/api.md's signatures, each with its defaults, are the code's (annotations left out)."""
    import inspect

    from bn_lab.report.finished import Run, SweepRun

    def plain(prefix, function):
        signature = inspect.signature(function)
        parameters = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
        return f"`{prefix}{signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)}`"

    documented = (ROOT / "docs" / "api.md").read_text()
    functions = [(f"bn_lab.{n}", getattr(bn_lab, n)) for n in ("run", "load", "sweep", "load_sweep")]
    functions += [(f"Run.{n}", getattr(Run, n)) for n in ("weights", "metrics_frame", "plot", "diagnostics_plot")]
    functions += [(f"SweepRun.{n}", getattr(SweepRun, n)) for n in ("table", "report")]
    for prefix, function in functions:
        assert plain(prefix, function) in documented, prefix


def test_a_bundled_config_resolves_by_name_from_python():
    from bn_lab.config.yaml_io import ConfigError

    assert api.resolve_config("smoke", seed=3)["seed"] == 3
    with pytest.raises(ConfigError, match="no such file, nor a bundled config of that name; close: smoke"):
        api.resolve_config("smok")
