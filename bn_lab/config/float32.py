"""Numbers as the networks hold them: float32, with subnormals flushed to zero (TensorFlow's CPU
kernels and XLA do). A config's number is checked as it will be used: `epsilon: 1.0e-45` is > 0 in
Python and 0 in the network (a group_norm arm's loss was NaN from step 0). Pure Python.
"""

from __future__ import annotations

import math
import struct

SMALLEST_NORMAL = 2.0**-126  # float32's; anything smaller and nonzero is subnormal: 0 in the network
LARGEST = struct.unpack("f", struct.pack("f", 3.4028234663852886e38))[0]


def as_float32(value: float) -> float:
    """`value` as a float32 tensor holds it: rounded, inf beyond float32's range, 0 if subnormal."""
    try:
        (rounded,) = struct.unpack("f", struct.pack("f", value))
    except OverflowError:  # beyond float32's largest finite value
        return math.copysign(math.inf, value)
    return math.copysign(0.0, rounded) if abs(rounded) < SMALLEST_NORMAL else rounded


def problem(value: float, check=None) -> str | None:
    """What is wrong with a number the network will use in float32 (None: nothing): it must stay
    finite, and `check` (a config key's own, returning what is wrong or None) must hold there too."""
    held = as_float32(value)
    if not math.isfinite(held):
        return f"must be at most {LARGEST:.4g} in magnitude in float32, the networks' precision"
    if held != value and check is not None and (found := check(held)):
        return f"{found} in float32, the networks' precision ({value!r} is {held!r} there)"
    return None
