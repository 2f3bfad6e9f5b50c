"""The configs and sweep files that ship inside the package (bn_lab/configs/; a clone's configs/
is a link to them): `bnlab run NAME` and `bnlab sweep NAME` find one by name from any directory,
`bnlab configs` lists them. Pure Python: no TensorFlow."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import yaml

from bn_lab.config.yaml_io import ConfigError

DIRECTORY = Path(__file__).resolve().parent.parent / "configs"

# How `bnlab configs` groups them, by file name: each file in the first group whose pattern matches.
GROUPS = (
    (
        "the lesson: the 3×100 MLP without and with BN",
        re.compile(r"(relu|sigmoid)_lr|smoke$|paper_fig1$|inference_demo$"),
    ),
    ("the conv net: 19 convolutions without and with BN", re.compile(r"convnet_(keras|manual|tf_nn|bias|relu)")),
    ("after the lesson", re.compile(r"(?!sweep_)")),
    ("sweeps: a grid of runs over seeds (bnlab sweep NAME)", re.compile(r"sweep_")),
)


def names() -> list[str]:
    """Every bundled file's name, without .yaml, sorted."""
    return sorted(p.stem for p in DIRECTORY.glob("*.yaml"))


def path(argument: str | Path) -> Path:
    """The file a command's CONFIG or SWEEP argument names: a path as given, else a bundled name
    (`smoke`, `smoke.yaml`). ConfigError, one line with the closest names, when it is neither."""
    given = Path(argument)
    if given.exists() or given.parent != Path("."):
        return given
    name = given.name.removesuffix(".yaml")
    if (DIRECTORY / f"{name}.yaml").is_file():
        return DIRECTORY / f"{name}.yaml"
    close = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
    hint = f"; close: {', '.join(close)}" if close else ""
    raise ConfigError(f"{argument}: no such file, nor a bundled config of that name{hint} (bnlab configs lists them)")


def description(file: Path) -> str:
    """A run config's `description:`; a sweep file's first comment line (its claim)."""
    text = file.read_text(encoding="utf-8")
    tree = yaml.safe_load(text) or {}
    if isinstance(tree, dict) and isinstance(tree.get("description"), str):
        return tree["description"]
    first = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "")
    return first


def group_of(name: str) -> str:
    return next(title for title, pattern in GROUPS if pattern.match(name))


def listing(width: int = 100) -> str:
    """Every bundled file, grouped, one line each: its name and description (cut to `width`)."""
    grouped: dict[str, list[str]] = {title: [] for title, _ in GROUPS}
    for name in names():
        grouped[group_of(name)].append(name)
    column = max(len(n) for n in names()) + 2
    lines = []
    for title, members in grouped.items():
        lines.append(f"{title}:")
        for name in members:
            line = f"  {name:<{column}}{description(DIRECTORY / f'{name}.yaml')}"
            lines.append(line if len(line) <= width else line[: width - 1] + "…")
        lines.append("")
    lines.append("bnlab run NAME runs one from any directory; bnlab configs NAME prints it to copy and edit.")
    return "\n".join(lines)
