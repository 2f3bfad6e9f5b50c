"""Several seeds of one config (`bnlab run --seeds`, `bn_lab.run(seeds=...)`): a sweep without grid
axes, one cell per seed, in a directory of its own."""

from __future__ import annotations

from pathlib import Path

from bn_lab.store import callers, claims, rundir
from bn_lab.sweeps import driver, spec

# The seeds a --seeds directory's name lists, at most (beyond, "-and-N-more"): a name has 255 bytes.
NAMED_SEEDS = 6


def seeds_directory_name(seeds: list[int]) -> str:
    """<time>-seeds0-4 for a range of seeds, <time>-seeds0_3_7 otherwise, <time>-seeds0_3_7_9_12_20-and-94-more
    for many (rundir.RUN_ID: what `latest` may name)."""
    ordered = sorted(seeds)
    contiguous = ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 1
    if contiguous:
        return f"{claims.timestamp()}-seeds{ordered[0]}-{ordered[-1]}"
    more = f"-and-{len(seeds) - NAMED_SEEDS}-more" if len(seeds) > NAMED_SEEDS else ""
    return f"{claims.timestamp()}-seeds" + "_".join(map(str, seeds[:NAMED_SEEDS])) + more


def run_seeds(
    config: dict,
    seeds: list[int],
    *,
    out: str | Path | None = None,
    results_root: str | Path = "results",
    jobs: int = 1,
    force: bool = False,
    device: str = "auto",
    progress: str = "auto",
    source: str = "",
    options: callers.CallerOptions = callers.API_RUN,
):
    """The pair of a resolved config for each seed: a sweep without axes in `out`, or a new
    results/<experiment>/<time>-seeds<...>/ (with a `latest` link beside it); one cell per seed,
    each a complete run directory. Rerunning with the same `out` resumes. Returns the SweepResult.
    """
    spec.of_seeds(config, seeds, name=config["experiment"], source=source)  # bad seeds fail before any directory
    if out is not None:
        claims.check_location(Path(out), options)
        sweep_dir = Path(out)
    else:
        parent = Path(results_root) / config["experiment"]
        sweep_dir = claims.new_directory(parent, seeds_directory_name(seeds), options)
    definition = spec.of_seeds(config, seeds, name=sweep_dir.name, source=source)
    result = driver.run_sweep(
        definition, sweep_dir=sweep_dir, jobs=jobs, force=force, device=device, progress=progress, options=options
    )
    if out is None:
        rundir.point_latest(sweep_dir)
    return result
