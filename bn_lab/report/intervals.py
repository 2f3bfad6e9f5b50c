"""95% confidence intervals over seeds, for the report and the `--seeds` table. Pure Python.

- A success rate ("4 of 5 seeds learned"): the Wilson score interval. With 5 seeds the normal
  approximation (Wald) gives 0/5 and 5/5 a zero-width interval and can leave [0, 1];
  Clopper-Pearson never undercovers but is wider than its 95% (it is conservative by
  construction). Wilson's coverage stays close to 95% at small n and its bounds stay in [0, 1]:
  4/5 is 0.38-0.96, 0/5 is 0.00-0.43.
- A paired uplift (an arm minus the first arm, seed by seed: the same initial weights and the
  same batches): Student's t on the paired differences, mean ± t(0.975, n−1)·s/√n. A bootstrap
  of 5 differences has at most 5 distinct values to resample: its percentile interval is
  too narrow at the sizes these sweeps have (5 to 20 seeds); t is exact for normal differences,
  and the differences of the stable cells are close to symmetric. A cell with one seed has none.
"""

from __future__ import annotations

import math
import statistics

Z_975 = 1.959963984540054  # the standard normal's 97.5% quantile
# Student's t 97.5% quantiles for 1..30 degrees of freedom (beyond: the expansion below).
T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t_975(degrees_of_freedom: int) -> float:
    if degrees_of_freedom <= len(T_975):
        return T_975[degrees_of_freedom - 1]
    z, df = Z_975, degrees_of_freedom  # Cornish-Fisher: within 1e-4 of the quantile beyond 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def wilson(successes: int, n: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a success rate; None without trials."""
    if n <= 0:
        return None
    p, z2 = successes / n, Z_975**2
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = Z_975 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # At 0/n and n/n the bound is exactly 0 or 1: rounding would leave it a hair off.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def t_interval(values: list[float]) -> tuple[float, float] | None:
    """The 95% t interval of the mean of values over seeds (paired differences, or an arm's own
    accuracies); None below two values."""
    n = len(values)
    if n < 2:
        return None
    mean, half = statistics.mean(values), t_975(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


def rate_text(successes: int, n: int) -> str:
    """e.g. '4/5 (0.38-0.96)'."""
    interval = wilson(successes, n)
    return "—" if interval is None else f"{successes}/{n} ({interval[0]:.2f}-{interval[1]:.2f})"


# A difference of two accuracies lies in [-1, 1]: an interval beyond is cut there.
ACCURACY_DIFFERENCE = (-1.0, 1.0)
FEW = 3  # below this many values an interval is said to rest on them: "(n=2)"


def uplift_text(differences: list[float], digits: str = ".4f", bounds: tuple[float, float] | None = None) -> str:
    """e.g. '+0.0306 to +0.0376'; cut to bounds (what the quantity can be) and then marked
    "(clipped)"; resting on fewer than FEW values, marked with their number, e.g. "(n=2)"."""
    interval = t_interval(differences)
    if interval is None:
        return "—"
    low, high = interval
    marks = []
    if bounds is not None and (low < bounds[0] or high > bounds[1]):
        low, high = max(low, bounds[0]), min(high, bounds[1])
        marks.append("clipped")
    if len(differences) < FEW:
        marks.append(f"n={len(differences)}")
    return f"{low:+{digits}} to {high:+{digits}}" + (f" ({', '.join(marks)})" if marks else "")


def accuracy_uplift_text(differences: list[float]) -> str:
    """uplift_text of differences of two accuracies: every accuracy uplift a report shows, cut to
    [-1, 1] wherever it appears."""
    return uplift_text(differences, bounds=ACCURACY_DIFFERENCE)
