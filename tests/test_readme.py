import re

from tests.conftest import ROOT


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    install_and_run, tests = readme_commands()[:2]
    assert "bnlab run configs/relu_lr2_badinit.yaml" in install_and_run
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci  # the same line, not a hand-made variant of it


def test_every_config_the_readme_names_exists():
    for name in re.findall(r"configs/([\w.]+\.yaml)", (ROOT / "README.md").read_text()):
        assert (ROOT / "configs" / name).is_file(), name


def test_the_readme_table_of_config_keys_is_the_configs_own():
    from bn_lab import config

    assert config.reference_table() in (ROOT / "README.md").read_text()
