"""YAML as bn_lab reads and writes it: one loader for config files, sweep files, --set and --grid.

And the one-line error every bad input becomes (ConfigError), with how values are quoted in it.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from bn_lab.disk.files import read_regular

# Characters that end a line (str.splitlines) and would break "one line per error".
_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(text: str) -> str:
    """text with line breaks escaped and undecodable bytes (lone surrogates) shown as \\udcXX: printable, one line."""
    return text.translate(_LINE_BREAKS).encode("utf-8", "backslashreplace").decode("utf-8")


def shown(value: Any, limit: int = 80) -> str:
    """A value as an error message quotes it: repr, one line, cut to `limit` characters.

    A container's repr is bounded before it is made (reprlib): a list of a billion items costs
    what ten do, not the memory and minutes of its whole repr."""
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        bounded = reprlib.Repr()  # its limits are attributes (keyword arguments from Python 3.12 on)
        bounded.maxlevel, bounded.maxstring, bounded.maxother = 3, limit, limit
        bounded.maxlist = bounded.maxtuple = bounded.maxdict = bounded.maxset = bounded.maxfrozenset = 10
        text = one_line(bounded.repr(value))
    else:
        text = one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConfigError(Exception):
    """A config problem, worded for the user: one line (always), names the key."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


class SweepError(ConfigError):
    """A problem with a sweep definition or its results directory; worded for the user (one line)."""


# A config is a few dozen values: a document of more nodes than this is no config, and PyYAML
# would build every node of it. Counted as written out, every alias expanded: a few hundred bytes
# of nested aliases expand to billions.
MAX_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """YAML as a config means it: `1e-3` is a float (YAML 1.1 reads it as a string: the exponent
    needs a dot there), and a key given twice in one mapping is an error, not the last one winning.
    Anchors, aliases and merge keys (`<<: *defaults`) are YAML and work, within one bound: the
    document as written out, each alias expanded, has at most MAX_NODES values; an alias inside
    its own anchor (a document without end) is refused."""

    def compose_node(self, parent, index):
        if not hasattr(self, "_expanded"):
            self._expanded, self._sizes, self._open = 0, {}, set()  # anchor -> its size written out
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"the alias *{event.anchor} is inside its own anchor; write the value out",
                    event.start_mark,
                )
            self._count(self._sizes.get(event.anchor, 1))
            return super().compose_node(parent, index)
        self._count(1)
        anchor = getattr(self.peek_event(), "anchor", None)
        before = self._expanded
        if anchor is not None:
            self._open.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open.discard(anchor)
            self._sizes[anchor] = self._expanded - before
        return node

    def _count(self, nodes: int) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"more than {MAX_NODES:,} values (aliases written out); not a config",
                self.peek_event().start_mark,
            )

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:`: its keys give way to those written here
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {shown(key)}", key_node.start_mark)
        return super().construct_mapping(node, deep)


class _Dumper(yaml.SafeDumper):
    """Writes what _Loader reads back the same: a string that looks like 1e5 is quoted; every value
    written out where it is (never an anchor and aliases)."""

    def ignore_aliases(self, data) -> bool:
        return True


# Scientific notation without a dot (1e-3, 1E6, 1e+06, -2.5e-4): a float, as in YAML 1.2 and Python.
# Mantissa and exponent start with a digit, so float() always gets one ("._e3" stays a string).
_SCIENTIFIC = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _SCIENTIFIC, list("-+0123456789."))


def parse_yaml(text: str):
    """YAML text as bn_lab reads every config, sweep file, --set and --grid value (see _Loader)."""
    try:
        return _unshared(yaml.load(text, Loader=_Loader))
    except RecursionError:  # PyYAML recurses per level: [[[[...]]]] a thousand deep
        raise yaml.MarkedYAMLError(problem="nested too deeply") from None


def _unshared(value):
    """Each mapping and list an object of its own: an alias makes PyYAML give two places the same
    one, and a change at one place would show at the other."""
    if isinstance(value, dict):
        return {k: _unshared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshared(v) for v in value]
    return value


# A config or sweep file is a few kB: one larger than this is no config (and /dev/zero never ends).
MAX_YAML_BYTES = 2**20


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        raw = read_regular(path, MAX_YAML_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a YAML file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:  # a device or a pipe (it may never end), or more than a config
        too_large = str(e).startswith("larger")
        raise ConfigError(
            f"{path}: larger than {MAX_YAML_BYTES // 2**20} MB; not a config"
            if too_large
            else f"{path}: not a regular file; give a YAML file"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line}); save it as UTF-8"
        ) from None
    try:
        tree = parse_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or ""
        if problem.startswith("duplicate key"):
            raise ConfigError(f"{path}: {problem}{at}; give each key once") from None
        raise ConfigError(f"{path}: not valid YAML{at}" + (f" ({problem})" if problem else "")) from None
    except (ValueError, OverflowError) as e:  # YAML that cannot be built (a date like 2024-13-45)
        raise ConfigError(f"{path}: not valid YAML ({type(e).__name__}: {e})") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values")
    return tree


def dump(config: dict) -> str:
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=None)
