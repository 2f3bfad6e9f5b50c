"""The one linter and formatter, ruff (configured in pyproject.toml), is clean on the whole tree."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    done = subprocess.run([sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_import_contracts_hold():
    """import-linter's contracts in pyproject.toml: one direction between the subpackages, reports
    never import the training, nothing imports cli or api."""
    lint = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    done = subprocess.run(lint, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_the_top_of_the_package_holds_at_most_six_modules_and_none_is_over_400_lines():
    """Roles live in subpackages (docs/code.md); a module that grows past 400 lines is two ideas."""
    top = sorted(p.name for p in (ROOT / "bn_lab").glob("*.py"))
    assert len(top) <= 6, top
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in (ROOT / "bn_lab").rglob("*.py")}
    assert max(lengths.values()) > 300  # the check reads real modules
    assert not {path: n for path, n in lengths.items() if n > 400}
