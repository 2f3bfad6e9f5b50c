"""Whatever the config's validation accepts works to the end (issue 33): arm names, labels, short
names, colors and descriptions drawn by hypothesis from what the validators themselves accept
(names.NAME_PATTERN, arms.STYLE_PROBLEMS, matplotlib's own colors), each trained for two steps in
this process, then through its figures, the printed table, progress lines, summary.csv and the
sweep report. Before, `no-bn` crashed TensorFlow, `x_precise_bn` overwrote `x`'s columns,
`$\\foo$` crashed matplotlib and a short's escape sequence reached every progress line.
"""

import csv
import warnings

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bn_lab import api, registry
from bn_lab.config import arms, names, user_text
from bn_lab.config import loading as config
from bn_lab.nets import normalizers
from bn_lab.report import printed
from bn_lab.store import rundir
from tests.conftest import tiny_mlp_config

# A few examples: each one trains, draws and reports (a few seconds, most of it a worker process starting).
SETTINGS = settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
# Text with what breaks naive drawing and printing: math mode, markup, other scripts, emoji, wide
# characters, combining marks, a table's column break, quotes; the validators refuse what a line cannot hold.
TRICKY = ["$", "\\", "{", "}", "_", "^", "|", "%", "&", "#", "'", '"', "<", ">", "≈", "α", "温", "🔥", "\u0301", "ا"]
TEXT = st.text(st.characters(codec="utf-8") | st.sampled_from(TRICKY), min_size=1, max_size=40)


def accepted(problem_of):
    return lambda value: problem_of(value) is None


STACK_NORMALIZERS = [n for n in registry.NORMALIZERS.names() if not normalizers.declared(n).RESIDUAL]
NAMES = st.from_regex(names.NAME_PATTERN, fullmatch=True).filter(accepted(names.name_problem))
LABELS = (TEXT | st.sampled_from([r"$\foo$", "50$ and 60$", "a|b", "x" * user_text.MAX_LABEL])).filter(
    accepted(arms.STYLE_PROBLEMS["label"])
)
SHORTS = TEXT.filter(accepted(arms.STYLE_PROBLEMS["short"]))


def _matplotlib_colors() -> list[str]:
    from matplotlib import colors

    return sorted(colors.get_named_colors_mapping())


COLORS = (
    st.sampled_from(_matplotlib_colors())
    | st.from_regex(r"#[0-9a-fA-F]{6}", fullmatch=True)
    | st.sampled_from(["C0", "C7", "0.5", "none"])
).filter(accepted(arms.STYLE_PROBLEMS["color"]))
ARM = st.fixed_dictionaries(
    # The normalizers of a stack (these arms train the tiny MLP): residual ones are refused there.
    {"name": NAMES, "normalizer": st.sampled_from([None, *STACK_NORMALIZERS])},
    optional={"label": LABELS, "short": SHORTS, "color": COLORS},
)
ARMS = st.lists(ARM, min_size=1, max_size=3, unique_by=lambda a: a["name"])


@pytest.mark.slow
@SETTINGS
@given(ARMS, st.text(max_size=30))
def test_whatever_the_config_accepts_trains_draws_prints_and_reports(tmp_path_factory, capsys, given_arms, description):
    try:
        cfg = tiny_mlp_config(arms=given_arms, description=description, **{"train.steps": 2, "train.eval_every": 1})
    except config.ConfigError:  # an arm refused with the config (options that do not fit): not this test's
        assume(False)
    out = tmp_path_factory.mktemp("names") / "seeds"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grid = api.run(cfg, seeds=[0], out=out, progress="lines")
    assert not [str(w.message) for w in caught if "not drawn" in str(w.message)]
    styles = {a.name: a for a in arms.of(cfg)}
    run = grid.runs["seed0"]

    # Every figure of the run and of the report was drawn.
    assert (run.path / rundir.ACCURACY_PLOT).is_file()
    assert (run.path / rundir.BATCH_SIZE_PLOT).is_file() == any(a.has_population_statistics for a in styles.values())
    assert (out / rundir.HEATMAP).is_file() and (out / rundir.CURVES).is_file()

    # The printed table and the progress lines name every arm, one line each, nothing a terminal obeys.
    table = printed.report_text(run.summary, run.path)
    printed_out = capsys.readouterr().out
    for text in (table, printed_out):
        assert not any(user_text.printable(line, len(line) + 1) != line for line in text.splitlines())
    (cell_line,) = [line for line in printed_out.splitlines() if line.startswith("[1/1] seed0  late val acc ")]
    assert all(a.short in cell_line for a in styles.values())

    # summary.csv: a column of its own for every figure of every arm, with that arm's numbers.
    with open(out / rundir.SUMMARY_CSV, newline="", encoding="utf-8") as f:
        header, values = list(csv.reader(f))
    assert len(header) == len(set(header))
    row = dict(zip(header, values))
    for name in styles:
        assert row[f"{name}/test_accuracy"] == str(run.summary["variants"][name]["test_accuracy"])

    # report.md: a column per arm, named by its label, in a table that stays a table.
    report_md = (out / rundir.REPORT).read_text(encoding="utf-8")
    for a in styles.values():
        assert "outcomes " + a.label.replace("|", "\\|") in report_md
    table_lines = [line for line in report_md.splitlines() if line.startswith("| ")]
    assert len({line.count(" | ") for line in table_lines}) == 1
