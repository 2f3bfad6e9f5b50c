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


def test_the_docs_table_of_config_keys_is_the_configs_own():
    from bn_lab.config.fields import reference_table

    assert reference_table() in (ROOT / "docs" / "configs.md").read_text()


def documents():
    return [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_resolves():
    """Every [text](path) and ![alt](path) in README.md, results/README.md and docs/ names a file that exists."""
    broken = []
    for document in documents():
        text = re.sub(r"```.*?```", "", document.read_text(), flags=re.S)  # code blocks hold no links
        for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor in the same page
            if not (document.parent / target.split("#")[0]).exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert not broken, broken
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in (ROOT / "docs").glob("*.md") if f"](docs/{p.name}" not in readme]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_nothing_cites_the_specification_outside_the_repository():
    """A clone cannot open ../shared/EXPERIMENTS.md: the configs, modules and docs cite docs/experiments.md."""
    assert (ROOT / "docs" / "experiments.md").is_file()
    places = [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("configs/*.yaml"), *ROOT.glob("bn_lab/**/*.py")]
    assert not [p.relative_to(ROOT) for p in places if "EXPERIMENTS.md" in p.read_text() or "shared/" in p.read_text()]
