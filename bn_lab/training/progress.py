"""The progress of a run: a tqdm bar on a terminal, one line per evaluation in logs."""

from __future__ import annotations

import sys
import time

from bn_lab.config import arms
from bn_lab.store import schema


class Progress:
    """A tqdm bar on a terminal; one line per evaluation in logs; nothing when quiet."""

    def __init__(self, total_steps: int, shorts: dict[str, str], mode: str = "auto", label: str = ""):
        """shorts: each arm's name in the line (arms.Arm.short)."""
        self.shorts = shorts
        self.mode = ("bar" if sys.stderr.isatty() else "lines") if mode == "auto" else mode
        self.total, self.label, self.started, self.bar = total_steps, label, time.perf_counter(), None
        self.last_step = 0
        if self.mode == "bar":
            from tqdm import tqdm

            # No rate on the bar: steps/s has one meaning, the table's (training steps, compiling left out).
            self.bar = tqdm(
                total=total_steps,
                desc=label or "steps",
                unit="step",
                leave=False,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}",
            )

    @staticmethod
    def text(evaluations, shorts: dict[str, str] | None = None) -> str:
        """'validation acc noBN 0.97  BN 0.98  (exact stats 0.98)  test acc noBN 0.96  BN 0.98': one part per
        split; shorts default to the lesson's pair's."""
        shorts = shorts or {name: style["short"] for name, style in arms.LESSON_STYLES.items()}
        parts = {}  # split (exact statistics go with the validation split they were taken on) -> its texts
        for e in evaluations:
            if e.split in schema.OTHER_STATISTICS:
                short = schema.OTHER_STATISTICS[e.split].short
                parts.setdefault(schema.VALIDATION, []).append(f"({short} {e.accuracy:.4f})")
            else:
                parts.setdefault(e.split, []).append(f"{shorts[e.variant]} {e.accuracy:.4f}")
        return "  ".join(f"{split.replace('_', ' ')} acc " + "  ".join(texts) for split, texts in parts.items())

    def __call__(self, step: int, evaluations) -> None:
        text = self.text(evaluations, self.shorts)
        if self.bar is not None:
            self.bar.update(step - self.last_step)
            if evaluations:
                self.bar.set_postfix_str(text)
        elif self.mode == "lines":
            # The time so far, not a rate: steps/s is the table's (training steps alone, compiling left out).
            rate = f"  ({time.perf_counter() - self.started:,.0f} s)" if step else ""
            try:
                print(f"{self.label}step {step:>6}/{self.total}  {text}{rate}", flush=True)
            except OSError:  # standard output took no more (a full disk, a closed pipe): the run goes on, silent
                self.mode = "quiet"
        self.last_step = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
