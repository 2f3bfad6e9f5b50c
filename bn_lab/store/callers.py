"""How a message names the options of whoever asked (a bnlab command, the Python API)."""

from __future__ import annotations

import re
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


# The bnlab options the library's messages name (they are worded for the command line), and
# what the Python API calls each: an API call's error is reworded with them, never naming an
# option the API lacks.
API_PARAMETERS = {
    "--set": "overrides",
    "--device": "device",
    "--threshold": "threshold",
    "--figure": "figure",
    "--executor": "executor",
    "--ray-address": "ray_address",
    "--jobs": "jobs",
    "--name": "name",
    "--grid": "grid",
    "--seeds": "seeds",
    "--results": "results",
    "--out": "out",
    "--force": "force=True",
}
_OPTION = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, API_PARAMETERS)) + r")(?![\w-])( [^\s:]+(?=:))?")


def for_the_api(message: str) -> str:
    """A message worded for the command line, each option named as the API's parameter: `--device
    1: unknown device` reads `device=1: unknown device`, `(with --set)` `(with overrides)`."""

    def parameter(found: re.Match) -> str:
        name, value = API_PARAMETERS[found.group(1)], found.group(2)
        return f"{name}={value[1:]}" if value else name

    return _OPTION.sub(parameter, message)
