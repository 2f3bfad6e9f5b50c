import re

import pytest

from tests.conftest import ROOT, bnlab


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    install_and_run, tests = readme_commands()[:2]
    assert install_and_run.endswith("bnlab run smoke")
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci  # the same line, not a hand-made variant of it


def test_every_config_the_readme_names_exists():
    text = (ROOT / "README.md").read_text()
    for name in re.findall(r"configs/([\w.]+\.yaml)", text) + re.findall(r"bnlab (?:run|sweep) ([a-z][\w.]*)", text):
        assert (ROOT / "configs" / f"{name.removesuffix('.yaml')}.yaml").is_file(), name


@pytest.mark.slow
def test_the_quick_starts_output_is_what_the_readme_shows(tmp_path):
    """The smoke config's whole printed output, but for this machine's seconds and steps/s and the
    run's directory, as the README shows it. It is the same with another CPU's kernels: smoke's
    learning rate keeps both networks' training stable (configs/smoke.yaml), and on 2026-12-07 the
    figures were the same with AVX-512, AVX2 and AVX-only kernels on one Intel Xeon."""
    shown = re.search(r"```\n(smoke \(seed 0.*?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)
    process = bnlab("run", "smoke", "--out", tmp_path / "run", cwd=tmp_path)
    assert process.returncode == 0, process.stderr
    printed = process.stdout[process.stdout.index("smoke (seed 0") :].rstrip("\n")

    def machine_free(text: str) -> str:
        text = re.sub(r"200 steps, [\d.]+ s on cpu", "200 steps, … s on cpu", text)
        text = re.sub(r"(training speed, steps/s) +[\d,]+ +[\d,]+", r"\1 …", text)
        return re.sub(r"\S*(smoke/<YYYYmmdd-HHMMSS>-seed0|/run)/?", "RUN", text)

    assert machine_free(printed) == machine_free(shown)


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
