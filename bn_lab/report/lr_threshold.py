"""The learning-rate threshold of a sweep over optimizer.learning_rate (Bjorck et al. 2018): per
arm, the largest learning rate at which it still succeeds on most seeds, its best learning rate,
and every arm at the first arm's best learning rate (is BN's edge the larger lr it allows, or is it
better at the same lr?). Read from bn_lab.report.sweep_results' points; pure Python, no TensorFlow.

"Succeeds": the report's success, its figure >= the threshold (a diverged seed fails). "Most
seeds": more than half of the finished ones. An arm's best learning rate: the most successes,
then the highest mean figure over the seeds that did not diverge (none where it diverged at every
learning rate).
"""

from __future__ import annotations

from bn_lab.report import intervals, outcome
from bn_lab.report.sweep_results import Point

KEY = "optimizer.learning_rate"


def applies(manifest: dict) -> bool:
    """Whether the sweep has a learning-rate axis with two values or more."""
    return any(a["key"] == KEY and len(a["values"]) > 1 for a in manifest["axes"])


def _groups(manifest: dict, points: list[Point]) -> list[tuple[dict, list[tuple[float, Point]]]]:
    """The points by the values of the other axes: [({key: display value}, [(lr, point), ...])]."""
    keys = [a["key"] for a in manifest["axes"]]
    lr_axis = keys.index(KEY)
    values = manifest["axes"][lr_axis]["values"]
    groups: dict[tuple, list] = {}
    for p in points:
        rest = tuple(i for k, i in enumerate(p.indices) if k != lr_axis)
        groups.setdefault(rest, []).append((values[p.indices[lr_axis]], p))
    return [
        ({k: members[0][1].grid[k] for k in keys if k != KEY}, sorted(members, key=lambda m: m[0]))
        for members in groups.values()
    ]


def _rank(point: Point, variant: str, threshold: float) -> tuple:
    mean, _ = outcome.mean_std(point.accuracies(variant))
    return point.successes(variant, threshold), -1.0 if mean is None else mean


def _accuracy(point: Point, variant: str, threshold: float) -> str:
    mean, std = outcome.mean_std(point.accuracies(variant))
    done = len(point.summaries)
    text = "diverged" if mean is None else f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")
    return f"{text}, {intervals.rate_text(point.successes(variant, threshold), done)}"


def table(manifest: dict, points: list[Point], styles: dict, threshold: float) -> list[list[str]]:
    """A header row, then per group of the other axes and arm: the largest learning rate that
    succeeds on most seeds, the best learning rate and the figure there, the figure at the first
    arm's best learning rate and the uplift over the first arm there (95% t interval)."""
    names = list(styles)
    reference = names[0]
    other_keys = [a["key"] for a in manifest["axes"] if a["key"] != KEY]
    ref_label = styles[reference]["label"]
    header = other_keys + [
        "arm",
        f"largest lr with success on most seeds (>= {threshold:g})",
        "best lr",
        "at its best lr (mean ± std, successes, 95% CI)",
        f"at {ref_label}'s best lr",
        f"uplift over {ref_label} there, 95% CI (paired t)",
    ]
    rows = [header]
    for grid, members in _groups(manifest, points):
        finished = [(lr, p) for lr, p in members if p.summaries]
        if not finished:
            continue
        best = {v: _best(finished, v, threshold) for v in names}
        for v in names:
            learning = [lr for lr, p in finished if p.successes(v, threshold) > len(p.summaries) / 2]
            row = [grid[k] for k in other_keys] + [styles[v]["label"], f"{max(learning):g}" if learning else "none"]
            if best[v] is None:  # no learning rate at which it has an accuracy: no best one
                row += ["none", "diverged at every learning rate"]
            else:
                lr, point = best[v]
                row += [f"{lr:g}", _accuracy(point, v, threshold)]
            if best[reference] is None:
                row += ["—", "—"]
            else:
                ref_lr, ref_point = best[reference]
                row += [
                    f"lr {ref_lr:g}: {_accuracy(ref_point, v, threshold)}",
                    "—" if v == reference else intervals.accuracy_uplift_text(ref_point.uplifts(v, reference)),
                ]
            rows.append(row)
    return rows


def _best(finished: list[tuple[float, Point]], variant: str, threshold: float) -> tuple[float, Point] | None:
    """An arm's best learning rate and its point (_rank), among those where some seed of it did not
    diverge; None where it diverged at every one (a learning rate of nothing but NaNs is no best)."""
    measured = [(lr, p) for lr, p in finished if p.accuracies(variant)]
    return max(measured, key=lambda m: _rank(m[1], variant, threshold)) if measured else None


TEXT = """Learning-rate threshold (Bjorck et al. 2018: BN's benefit is the larger learning rate it allows).
Per arm: the largest learning rate at which its {figure} reaches {threshold:g} on more than half of
the seeds; its best learning rate (most successes, then the highest mean); and every arm at the first
arm's best learning rate, with its paired uplift there: an uplift whose interval excludes 0 at the
same learning rate is an edge that is not (only) the larger learning rate."""
