#!/usr/bin/env python
"""The numbers docs/after-the-lesson.md's "BN in residual networks" quotes, from the finished cells.

    python scripts/residual_verdicts.py [RESULTS]      (default: results/)

Reads results/residual_variance, residual_depth, residual_depth_lr, residual_lr_batch (sweeps) and
residual_ghost_batch (a --seeds directory), written by the commands in their configs' headers,
and prints per experiment each arm's late validation accuracy over seeds (mean and 95% t
interval), the paired differences the claims turn on (95% t interval on the seed-by-seed
differences), and the branch shares at initialization against 1/(ℓ+1). Reads files only.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from bn_lab.report import intervals
from bn_lab.report.sweep_results import figure_of


def cells(sweep: Path) -> dict[str, dict]:
    """{cell name: summary.json} of the finished cells."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))}


def accuracy(summary: dict, arm: str) -> float | None:
    return figure_of(summary["variants"][arm], "late")


def spread(values: list[float]) -> str:
    """mean (95% t interval, cut to [0, 1] and then marked), over the seeds that did not diverge."""
    if not values:
        return "—"
    interval = intervals.t_interval(values)
    if not interval:
        return f"{statistics.mean(values):.3f}"
    low, high = max(interval[0], 0.0), min(interval[1], 1.0)
    clipped = ", clipped" if (low, high) != interval else ""
    return f"{statistics.mean(values):.3f} ({low:.3f} to {high:.3f}{clipped})"


def paired(summaries: list[dict], arm: str, reference: str) -> str:
    """arm − reference, seed by seed where neither diverged: mean (95% t interval, cut to [-1, 1])."""
    pairs = [(accuracy(s, arm), accuracy(s, reference)) for s in summaries]
    differences = [a - b for a, b in pairs if a is not None and b is not None]
    if not differences:
        return "—"
    text = intervals.uplift_text(differences, ".3f", bounds=intervals.ACCURACY_DIFFERENCE)
    return f"{statistics.mean(differences):+.3f} ({text}) [{len(differences)} pairs]"


def outcomes(summaries: list[dict], arm: str) -> str:
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s["variants"][arm]["outcome"]] = counts.get(s["variants"][arm]["outcome"], 0) + 1
    return ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))


def by_point(found: dict[str, dict]) -> dict[str, list[dict]]:
    points: dict[str, list[dict]] = {}
    for name, summary in found.items():
        points.setdefault(name.rsplit("_seed", 1)[0], []).append(summary)
    return points


def variance(results: Path) -> None:
    print("## Branch share of each block's output variance at initialization (residual_variance)")
    for point, summaries in by_point(cells(results / "residual_variance")).items():
        print(f"{point}: {len(summaries)} seeds")
        arms = list(summaries[0]["variants"])
        for arm in arms:
            shares = [s["variants"][arm].get("residual", {}).get("branch_share_initial") for s in summaries]
            shares = [s for s in shares if s]
            if not shares:
                continue
            per_block = [statistics.mean(column) for column in zip(*shares)]
            blocks = len(per_block)
            ratio = [share * (block + 1) for block, share in enumerate(per_block, start=1)]
            print(
                f"  {arm:10} share block 1 {per_block[0]:.3f}, 2 {per_block[1]:.3f}, {blocks // 2} {per_block[blocks // 2 - 1]:.3f}, "
                f"{blocks} {per_block[-1]:.4f}; min {min(per_block):.3f}; share·(ℓ+1) {min(ratio):.2f}..{max(ratio):.2f}"
            )


def sweep(results: Path, name: str, reference: str) -> None:
    print(f"## {name}: late validation accuracy, mean (95% t interval); paired differences against {reference}")
    for point, summaries in by_point(cells(results / name)).items():
        arms = list(summaries[0]["variants"])
        print(f"{point}: {len(summaries)} seeds")
        for arm in arms:
            values = [a for a in (accuracy(s, arm) for s in summaries) if a is not None]
            versus = "" if arm == reference else f"   {arm} − {reference} {paired(summaries, arm, reference)}"
            print(f"  {arm:10} {outcomes(summaries, arm):28} {spread(values)}{versus}")


def seeds(results: Path, name: str, reference: str, also: tuple[str, str] | None = None) -> None:
    summaries = list(cells(results / name).values())
    print(f"## {name}: {len(summaries)} seeds; paired differences against {reference}")
    for arm in summaries[0]["variants"]:
        values = [a for a in (accuracy(s, arm) for s in summaries) if a is not None]
        versus = "" if arm == reference else f"   {arm} − {reference} {paired(summaries, arm, reference)}"
        print(f"  {arm:10} {outcomes(summaries, arm):28} {spread(values)}{versus}")
    if also:
        print(f"  {also[0]} − {also[1]} {paired(summaries, *also)}")


def main(argv: list[str]) -> int:
    results = Path(argv[0] if argv else "results")
    if (results / "residual_variance").is_dir():
        variance(results)
    if (results / "residual_depth").is_dir():
        sweep(results, "residual_depth", "bn")
    if (results / "residual_depth_lr").is_dir():
        sweep(results, "residual_depth_lr", "bn")
    if (results / "residual_lr_batch").is_dir():
        sweep(results, "residual_lr_batch", "bn")
    if (results / "residual_ghost_batch").is_dir():
        seeds(results, "residual_ghost_batch", "bn", ("skip_init", "bn_g2"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
