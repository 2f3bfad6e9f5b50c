"""Text a user gives that bn_lab shows: what an arm's label, short name and color may be (checked
with the config), and how any other user string (a sweep's value, a summary's field, an error
from elsewhere) appears on a terminal or in a table (escaped and cut where it is shown).

Either way it is one bounded line without the characters a terminal obeys or that break a line
(ANSI escapes, \\r, \\n, bidirectional overrides): a 150,000-character label drew a figure 2.5
million pixels wide, and a short name's escape sequence went raw into every progress line.
Pure Python; checking a color imports matplotlib.colors (no TensorFlow).
"""

from __future__ import annotations

import unicodedata

from bn_lab.config.names import MAX_NAME

# A label names an arm in figures and tables; it defaults to the arm's name, so it may be as long.
MAX_LABEL = MAX_NAME
# A short name is in every progress line, once per arm; it defaults to the name, cut to this.
MAX_SHORT = 24
# matplotlib's longest color names (xkcd's) are about 30 characters.
MAX_COLOR = 40

# Characters that reorder the text around them on a terminal (and in a figure's label).
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unshowable(ch: str) -> bool:
    """A control character (ESC, \\r, \\n, BEL, C1), a line or paragraph separator, a lone surrogate
    (an undecodable byte) or a bidirectional control."""
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI_CONTROLS


def text_problem(value, limit: int) -> str | None:
    """What is wrong with a string shown as given (an arm's label, short, color), or None: it must
    be one line of at most `limit` printable characters."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    bad = next((ch for ch in value if _unshowable(ch)), None)
    if bad is not None:
        return f"must be one line of printable text (it holds {ascii(bad)})"
    if len(value) > limit:
        return f"must be at most {limit} characters long (it has {len(value):,})"
    return None


def color_problem(value) -> str | None:
    """What is wrong with an arm's color, or None: a color matplotlib draws (checked as it will be)."""
    if problem := text_problem(value, MAX_COLOR):
        return problem
    from matplotlib.colors import is_color_like

    if not is_color_like(value):
        return "must be a matplotlib color: a name (tab:blue, red, xkcd:sky blue) or #rrggbb"
    return None


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str, limit: int = 200) -> str:
    """Any string as bn_lab shows it on a terminal or in a table: what _unshowable finds escaped
    (\\x1b, \\n, \\u202e), cut to `limit` characters."""
    return cut("".join(ascii(ch)[1:-1] if _unshowable(ch) else ch for ch in text), limit)


def flattened(text: str) -> str:
    """Free text (a description) on one line: what _unshowable finds a space, white space runs one space."""
    return " ".join("".join(" " if _unshowable(ch) else ch for ch in text).split())


def counted(n: int, noun: str) -> str:
    """ "1 cell", "2 cells", "2,997 cells"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def listed(names: list[str], count: int = 3) -> str:
    """The first `count` names, and how many more: what one line shows of a list."""
    return ", ".join(names[:count]) + (f" and {len(names) - count:,} more" if len(names) > count else "")
