"""How a message names the options of whoever asked (a bnlab command, the Python API)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallerOptions:
    """How a message names the options of whoever asked (a bnlab command, the API): it never names
    one that caller lacks (`bnlab sweep` has no --out, `bnlab run --seeds` no --name)."""

    elsewhere: str  # what writes elsewhere
    force: str  # what replaces

    @property
    def write_elsewhere(self) -> str:
        return f"use {self.elsewhere} to write elsewhere"


RUN_COMMAND = CallerOptions("--out", "--force")  # bnlab run, with --seeds too
SWEEP_COMMAND = CallerOptions("--name or --results", "--force")  # bnlab sweep
API_RUN = CallerOptions("another out=", "force=True")  # bn_lab.run
API_SWEEP = CallerOptions("another name= or results=", "force=True")  # bn_lab.sweep
