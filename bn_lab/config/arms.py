"""The arms of a run: the networks it compares, trained from the same initial weights on the same
batches. Each arm has a name (its key in every file), a normalizer (none, or one of
registry.NORMALIZERS with its options), where it sits in a hidden layer, and how figures show it.

A config's `arms:` lists them; without it, a run compares the lesson's pair, LESSON below, the
only place that names an arm. Every other piece asks an arm what it has (population statistics,
a scale invariance, a placement), never which arm it is. Pure Python: no TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bn_lab import registry
from bn_lab.config import float32
from bn_lab.config.names import name_problem
from bn_lab.config.user_text import MAX_LABEL, MAX_SHORT, color_problem, cut, text_problem
from bn_lab.config.yaml_io import ConfigError, shown
from bn_lab.nets import normalizers
from bn_lab.nets.architecture import residual_models
from bn_lab.nets.bn import groups

# Figures give arm k the k-th color (or the one its config names); ten arms at most.
COLORS = (
    "tab:red",
    "tab:blue",
    "tab:green",
    "tab:orange",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:gray",
    "tab:olive",
    "tab:cyan",
)
MAX_ARMS = len(COLORS)

# Where a normalizer sits in a hidden layer.
PLACEMENTS = (
    "before_activation",  # matmul/conv (no bias) -> norm -> activation: the lessons' default
    "bias_before_activation",  # matmul/conv + bias -> norm -> activation
    "after_activation",  # matmul/conv + bias -> activation -> norm
    "after_activation_no_bias",  # matmul/conv (no bias) -> activation -> norm
)

# The keys of one arm in a config, and what each means (docs/configs.md).
KEYS = {
    "name": "the arm's name in every file (letters, digits, '_', '.', '-'); required",
    "normalizer": f"null (a plain network) or one of {', '.join(registry.NORMALIZERS)}",
    "options": "the normalizer's options; backend, momentum, epsilon default to the bn section's",
    "placement": "where the normalizer sits; default: bn.placement",
    "label": f"how figures and tables name it (one line, at most {MAX_LABEL} characters); default: its name",
    "short": f"its name in progress lines (one line, at most {MAX_SHORT} characters); default: its name, cut to that",
    "color": "its color in figures (a matplotlib color); default: the k-th of a fixed cycle",
}

# What each of an arm's style keys may be (bn_lab.user_text): checked with the config, and in a
# finished run's summary.json before its readers show it.
STYLE_PROBLEMS = {
    "label": lambda v: text_problem(v, MAX_LABEL),
    "short": lambda v: text_problem(v, MAX_SHORT),
    "color": color_problem,
}


@dataclass(frozen=True)
class Arm:
    name: str
    normalizer: str | None = None  # registry.NORMALIZERS, or None: a plain network
    options: dict = field(default_factory=dict, hash=False)  # every option, resolved
    placement: str = "before_activation"
    label: str = ""
    short: str = ""
    color: str = ""

    @property
    def declared(self) -> type[normalizers.Normalizer] | None:
        return normalizers.declared(self.normalizer) if self.normalizer else None

    @property
    def has_population_statistics(self) -> bool:
        """Exact statistics and the single-image training-mode check apply to it."""
        return uses_population_statistics(self.normalizer)

    @property
    def scale_invariance(self) -> str | None:
        """Which part of a hidden kernel it can rescale freely (normalizers.SCALE_INVARIANCES), or None."""
        return self.declared.SCALE_INVARIANCE if self.declared else None

    @property
    def after_activation(self) -> bool:
        return self.normalizer is not None and self.placement.startswith("after_activation")

    @property
    def hidden_bias(self) -> bool:
        """Whether its hidden layers have a bias (a normalizer before the activation makes it redundant)."""
        if self.normalizer and self.declared.HIDDEN_BIAS is not None:  # a residual normalizer decides
            return self.declared.HIDDEN_BIAS
        return self.normalizer is None or self.placement in ("bias_before_activation", "after_activation")

    def as_dict(self) -> dict:
        """How summary.json records it (what its readers show)."""
        return {key: getattr(self, key) for key in STYLE}


def uses_population_statistics(normalizer: str | None) -> bool:
    return bool(normalizer) and normalizers.declared(normalizer).HAS_POPULATION_STATISTICS


# What summary.json records of each arm: what the readers of a finished run show.
STYLE = ("name", "normalizer", "label", "short", "color")


def recorded(summary: dict) -> dict[str, dict]:
    """{arm name: its STYLE entries} of a finished run's summary, in the run's order. A summary
    written before arms were recorded holds the lesson's pair."""
    given = summary.get("arms") or [a for a in LESSON if a["name"] in summary.get("variants", {})]
    return {a["name"]: dict(a) for a in given}


def _bn_defaults(config: dict, declared) -> dict:
    """A normalizer's defaults, the bn section's values for the options it shares with it."""
    return {k: config["bn"].get(k, default) for k, default in declared.OPTIONS.items()}


# The lesson's pair, the arms of a config without `arms:`: plain, and BN as the bn section says.
LESSON = (
    {"name": "without_bn", "normalizer": None, "label": "without BN", "short": "noBN", "color": COLORS[0]},
    {"name": "with_bn", "normalizer": "batch_norm", "label": "with BN", "short": "BN", "color": COLORS[1]},
)

LESSON_NAMES = tuple(a["name"] for a in LESSON)
LESSON_STYLES = {a["name"]: a for a in LESSON}  # how figures show the pair (Arm.as_dict's keys)


def lesson(config: dict) -> tuple[Arm, ...]:
    return tuple(
        Arm(
            **a,
            options=_bn_defaults(config, normalizers.declared(a["normalizer"])) if a["normalizer"] else {},
            placement=config["bn"]["placement"],
        )
        for a in LESSON
    )


def of(config: dict) -> tuple[Arm, ...]:
    """The arms a resolved config compares, in its order."""
    if "arms" not in config:
        return lesson(config)
    return tuple(
        Arm(
            a["name"],
            a["normalizer"],
            dict(a["options"]),
            a["placement"],
            *(a.get(key) or default_style(key, a["name"], k) for key in ("label", "short", "color")),
        )
        for k, a in enumerate(config["arms"])
    )


def default_style(key: str, name: str, k: int) -> str:
    """An arm's label, short or color where its config gives none: its name (a short one cut to
    fit a progress line), the k-th color of the cycle."""
    return {"label": name, "short": cut(name, MAX_SHORT), "color": COLORS[k]}[key]


def named(config: dict, name: str) -> Arm:
    found = {a.name: a for a in of(config)}
    if name not in found:
        raise ValueError(f"no arm {name!r}; this run's arms are {', '.join(found)}")
    return found[name]


def _option(where: str, normalizer: str, key: str, value, default, choices) -> object:
    if choices is not None:
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"{where}: {key}: unknown value {shown(value)}; allowed: {', '.join(choices)}")
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = number and isinstance(value, int)
    elif isinstance(default, float):
        if number and not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be a finite number, got {shown(value)}")
        if number and (problem := float32.problem(value)):
            raise ConfigError(f"{where}: {key} {problem}, got {shown(value)}")
        ok = number
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{where}: {key} must be {type(default).__name__}, got {shown(value)}")
    return value


def resolve(given, config: dict, hidden_shapes: list[tuple[int, ...]], where: str) -> list[dict]:
    """A config's `arms:` checked and filled in: one dict per arm with every key of KEYS that it
    resolves (name, normalizer, options, placement; label, short, color where given). One line
    names the arm, the key and what is allowed."""
    if not isinstance(given, list) or not given:
        raise ConfigError(
            f"{where}: arms must be a non-empty list of arms ({{name: ..., normalizer: ...}}), got {shown(given)}"
        )
    if len(given) > MAX_ARMS:
        raise ConfigError(f"{where}: arms: at most {MAX_ARMS} arms, got {len(given)}")
    resolved, seen = [], set()
    for k, arm in enumerate(given):
        at = f"{where}: arms[{k}]"
        if not isinstance(arm, dict):
            raise ConfigError(f"{at} must be a mapping with keys {', '.join(KEYS)}, got {shown(arm)}")
        unknown = [key for key in arm if key not in KEYS]
        if unknown:
            raise ConfigError(f"{at}: unknown key {shown(unknown[0])}; an arm's keys are {', '.join(KEYS)}")
        name = arm.get("name")
        if isinstance(name, (int, float)) and not isinstance(name, bool):  # YAML read `1e5` as a number
            raise ConfigError(f"{at}: name must be a string; YAML read it as the number {name!r}: put it in quotes")
        if not isinstance(name, str) or (problem := name_problem(name)):
            raise ConfigError(
                f"{at}: name {problem if isinstance(name, str) else 'is required, a string'}, got {shown(name)}"
            )
        at = f"{where}: arms[{k}] ({name})"
        if name in seen:
            raise ConfigError(f"{at}: two arms are named {name!r}; every arm needs a name of its own")
        seen.add(name)
        normalizer = arm.get("normalizer")
        if normalizer is not None and (not isinstance(normalizer, str) or normalizer not in registry.NORMALIZERS):
            raise ConfigError(
                f"{at}: normalizer: unknown value {shown(normalizer)}; allowed: null, {', '.join(registry.NORMALIZERS)}"
            )
        options = arm.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{at}: options must be a mapping of option to value, got {shown(options)}")
        if options and normalizer is None:
            raise ConfigError(f"{at}: options are given but the arm has no normalizer")
        full = {}
        if normalizer is not None:
            declared = normalizers.declared(normalizer)
            model = config["model"]["name"]
            if declared.RESIDUAL and model not in (residual := residual_models()):
                raise ConfigError(
                    f"{at}: normalizer {normalizer} belongs in residual blocks, and model.name is {model}; "
                    f"use it with model.name: {' or '.join(residual)}"
                )
            full = _bn_defaults(config, declared)
            for key, value in options.items():
                if key not in declared.OPTIONS:
                    allowed = ", ".join(declared.OPTIONS) or "none"
                    raise ConfigError(f"{at}: {normalizer} has no option {shown(key)}; its options: {allowed}")
                full[key] = _option(at, normalizer, key, value, declared.OPTIONS[key], declared.CHOICES.get(key))
            # Checked as given, and as the network will hold the numbers (1e-45 is 0 in float32).
            held = {k: float32.as_float32(v) if isinstance(v, float) else v for k, v in full.items()}
            for shape in hidden_shapes:
                if problem := declared.problem(shape, full):
                    raise ConfigError(f"{at}: {normalizer}: {problem}")
                if held != full and (problem := declared.problem(shape, held)):
                    raise ConfigError(f"{at}: {normalizer}: {problem} in float32, the networks' precision")
            if "group_size" in full and (problem := groups.problem(full["group_size"], config["train"]["batch_size"])):
                raise ConfigError(f"{at}: {normalizer}: group_size {problem}")
        placement = arm.get("placement", config["bn"]["placement"])
        if placement not in PLACEMENTS:
            raise ConfigError(f"{at}: placement: unknown value {shown(placement)}; allowed: {', '.join(PLACEMENTS)}")
        entry = {"name": name, "normalizer": normalizer, "options": full, "placement": placement}
        for key, problem_of in STYLE_PROBLEMS.items():
            if key in arm:
                if problem := problem_of(arm[key]):
                    raise ConfigError(f"{at}: {key} {problem}, got {shown(arm[key], 60)}")
                entry[key] = arm[key]
        resolved.append(entry)
    for key in ("label", "short"):  # figures, tables and progress lines tell the arms apart by these
        seen = {}
        for k, entry in enumerate(resolved):
            text = entry.get(key) or default_style(key, entry["name"], k)
            if text in seen:
                raise ConfigError(
                    f"{where}: arms[{k}] ({entry['name']}): {key} {shown(text, 40)} is also arms[{seen[text]}]'s; "
                    f"figures, tables and progress lines tell arms apart by it: give each its own"
                )
            seen[text] = k
    return resolved
