"""What a name that becomes a path component may be: an experiment's, a sweep's, a cell's, a
value's, an arm's. Pure Python."""

from __future__ import annotations

import re

# A name is a directory's name, and its staging directory's (.<name>.partial-<pid>): 200
# characters leave room for that within the 255 bytes a file name may have.
MAX_NAME = 200


# The characters a name may have: a path component on any file system, a word in a shell.
NAME_PATTERN = r"[A-Za-z0-9_.-]+"


def name_problem(v: str) -> str | None:
    """What is wrong with a name that becomes a path component (an experiment, a sweep, a cell, a value's name)."""
    if not re.fullmatch(NAME_PATTERN, v):
        return "may contain only letters, digits, '_', '.', '-'"
    if v in (".", ".."):
        return "must not be '.' or '..' (it names a directory of its own)"
    if len(v) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters long"
    return None
