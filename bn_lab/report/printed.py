"""The text a run shows: a figure's title and the table `bnlab run` prints."""

from __future__ import annotations

import textwrap
from pathlib import Path

from bn_lab.config import arms
from bn_lab.config.user_text import flattened
from bn_lab.report import outcome
from bn_lab.store import rundir, schema


def title(config: dict, limit: int = 90) -> str:
    """A figure's title: the experiment and its description (any line break or control character a
    space), on one line of at most `limit` characters or two, broken at a word; what two lines do
    not hold is cut, with " …". Figures draw it as plain text (plots.new_figure)."""
    description = flattened(config["description"])
    text = config["experiment"] + (f": {description}" if description else "")
    lines = textwrap.wrap(text, limit, break_long_words=True)
    if len(lines) <= 2:
        return "\n".join(lines)
    second = lines[1]
    space = second.rfind(" ", 0, limit - 1)
    return lines[0] + "\n" + second[: space if space > limit // 2 else limit - 2] + " …"


def _fmt(x, digits=4):
    return "—" if x is None else f"{x:.{digits}f}"


def _late(figures) -> str:
    return "—" if figures is None else f"{figures['mean']:.4f} [{figures['min']:.2f}-{figures['max']:.2f}]"


def _best(figures) -> str:
    return "—" if figures is None else f"{figures['accuracy']:.4f} @ {figures['step']:,}"


def _other(r: dict, section: str, key: str, show) -> str:
    """A figure with exact or batch statistics (schema.OTHER_STATISTICS' summary.json section)."""
    return show(r[section][key]) if section in r else ""


def _good_from(r: dict) -> str:
    if "batch_size_curve" not in r:
        return ""
    size = r["batch_size_curve"]["good_from"]
    return "never" if size is None else f"{size} image{'s' if size > 1 else ''}"


def _other_rows(other: schema.OtherStatistics) -> list[tuple]:
    """The printed rows of one of schema.OTHER_STATISTICS: its final and late validation accuracy."""
    return [
        (f"  {other.long}: final", lambda r: _other(r, other.section, "final_val_accuracy", _fmt)),
        (f"  {other.long}: late", lambda r: _other(r, other.section, "late_val_accuracy", _late)),
    ]


GOOD_FROM_ROW = "training mode ≈ inference from batch"
# A BN arm's moving averages holding more than this of their starting values (momentum ** steps)
# have not settled: the table says so beside its EMA figures.
UNSETTLED = 0.05
POPULATION_ROWS = (
    *(label for other in schema.OTHER_STATISTICS.values() for label, _ in _other_rows(other)),
    "single images, training mode",
    GOOD_FROM_ROW,
)


def report_text(summary_data: dict, run_dir: Path) -> str:
    """The table `bnlab run` prints: outcome, the robust figures, then the final checks."""
    v = summary_data["variants"]
    style = arms.recorded(summary_data)
    names = [n for n in style if n in v]
    late_points = next((r["late_val_accuracy"]["points"] for r in v.values() if r["late_val_accuracy"]), None)

    def measured(section: str) -> bool:  # rows of a section no arm has are left out
        return any(section in v[n] for n in names)

    rows = [
        ("outcome", lambda r: r["outcome"]),
        ("final validation accuracy", lambda r: _fmt(r["final_val_accuracy"])),
        ("late validation accuracy [min-max]", lambda r: _late(r["late_val_accuracy"])),
        ("best validation accuracy @ step", lambda r: _best(r["best_val_accuracy"])),
        *(row for other in schema.OTHER_STATISTICS.values() if measured(other.section) for row in _other_rows(other)),
        ("test accuracy", lambda r: _fmt(r["test_accuracy"])),
        ("single images, inference mode", lambda r: _fmt(r["single_sample"]["inference"])),
        ("single images, training mode", lambda r: _fmt(r["single_sample"]["training"])),
        *([(GOOD_FROM_ROW, _good_from)] if measured("batch_size_curve") else []),
        (
            "training speed, steps/s",
            lambda r: "—" if r["steps_per_second"] is None else f"{r['steps_per_second']:,.0f}",
        ),
    ]
    header = f"{'':38}" + "".join(f"{n.replace('_', ' '):>24}" for n in names)
    lines = [
        f"{summary_data['experiment']} (seed {summary_data['seed']}, BN backend {summary_data['backend']}, "
        f"{summary_data['steps']:,} steps, {summary_data['wall_seconds']:.1f} s on {summary_data['device']})",
        header,
    ]
    # Exact statistics and the training-mode check mean nothing without population statistics.
    applicable = {n: arms.uses_population_statistics(style[n]["normalizer"]) for n in names}
    for label, get in rows:
        cells = [get(v[n]) if applicable[n] or label not in POPULATION_ROWS else "n/a" for n in names]
        lines.append(f"{label:38}" + "".join(f"{cell:>24}" for cell in cells))
    window = summary_data["late_window"]
    if late_points:
        lines.append(
            f"late: mean [min-max] of the {late_points} validation evaluation{'s' if late_points > 1 else ''} after step "
            f"{window['after_step']:,} "
            f"(the last {window['fraction']:.0%} of training)"
        )
    for n in names:
        name = n.replace("_", " ")
        if v[n]["diverged"]:
            lines.append(
                f"{name}: loss became NaN/inf at step {v[n]['diverged_at_step']:,}; training stopped "
                f"(the lesson's TF1 code printed {summary_data['tf1_diverged_val_accuracy']:.4f} for such a network: "
                "the argmax of NaN logits is class 0, and that is class 0's share of the validation images)"
            )
            continue
        if v[n]["outcome"] == schema.NEAR_CHANCE and "chance_val_accuracy" in summary_data:
            lines.append(
                f"{name}: near chance: {v[n]['final_val_accuracy']:.4f} is less than {outcome.NEAR_CHANCE_MARGIN} "
                f"above {summary_data['chance_val_accuracy']:.4f}, what always answering the commonest class gets: "
                "it learned next to nothing"
            )
        elif v[n]["outcome"] == schema.COLLAPSED:
            lines.append(
                f"{name}: collapsed: {v[n]['top_class_share']:.0%} of the validation images get the same "
                "class, so its accuracy is about that class's share"
            )
        if (left := v[n].get("moving_average_start_weight") or 0) > UNSETTLED:
            lines.append(
                f"{name}: {v[n]['steps_trained']:,} steps are too few for its moving averages to settle: they still "
                f"hold {left:.0%} of their starting values, so its EMA figures lag (exact population statistics "
                "show by how much)"
            )
    written = ", ".join(name for name in rundir.RUN_ENTRIES if (Path(run_dir) / name).is_file())
    lines.append(f"results: {run_dir}/ ({written})")
    lines.append(f"curves, diagnostics and hyperparameters in TensorBoard: tensorboard --logdir {run_dir}")
    return "\n".join(lines)
