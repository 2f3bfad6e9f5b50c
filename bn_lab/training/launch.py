"""One run, claimed, trained and put in place: what `bnlab run` and `bn_lab.run()` call."""

from __future__ import annotations

from pathlib import Path

from bn_lab.store import callers, claims, rundir
from bn_lab.training import preflight


def run_config(
    config: dict,
    *,
    out: str | Path | None = None,
    results_root: str | Path = "results",
    force: bool = False,
    device: str = "auto",
    progress: str = "auto",
    command_line: str | None = None,
    origin: str = "config",
    options: callers.CallerOptions = callers.API_RUN,
) -> Path:
    """Trains the arms of a resolved config into `out`, or a new results/<experiment>/<run-id>/; returns it.

    --force (force=True) replaces only an existing bn_lab run at `out`, never other files.
    Without `out`, the new run directory gets a `latest` link beside it. origin: how a problem
    found before training names the config (its file); options: how messages name the caller's
    options (the API's by default; `bnlab run` gives its own).
    """
    preflight.check([(config, origin)], device)
    if out is not None:
        claim = claims.claim(out, force, options=options)
    else:
        claim = claims.claim_new(results_root, config["experiment"], config["seed"])
    from bn_lab.training import experiment

    with claim:
        experiment.run_experiment(config, claim.staging, device=device, progress=progress, command_line=command_line)
    if out is None:
        rundir.point_latest(claim.run_dir)
    return claim.run_dir
