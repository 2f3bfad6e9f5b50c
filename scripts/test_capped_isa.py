#!/usr/bin/env python
"""The whole test suite as on another CPU: this machine's vector extensions capped one level down.

    python scripts/test_capped_isa.py [pytest arguments]

TensorFlow picks its kernels (oneDNN's and XLA's) from the CPU's best vector extensions, and
their last bits differ, as they do between CPU families: a test that pins a number from a
chaotic run passes on its author's CPU and fails on another. Capping the extensions reproduces
that on one machine. On an AVX-512 CPU this runs the suite with AVX2 kernels; on an AVX2 CPU,
with AVX ones. Every run records the cap (environment.json: cpu.kernel_settings).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# best extension this CPU has (a /proc/cpuinfo flag) -> (ONEDNN_MAX_CPU_ISA, --xla_cpu_max_isa) one level below
CAPS = (("avx512f", ("AVX2", "AVX2")), ("avx2", ("AVX", "AVX")))


def caps(flags: set[str]) -> tuple[str, str]:
    for flag, cap in CAPS:
        if flag in flags:
            return cap
    raise SystemExit("error: this CPU has neither AVX-512 nor AVX2: there is no lower level worth capping to")


def main(argv: list[str]) -> int:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        raise SystemExit("error: /proc/cpuinfo is unreadable: this check needs Linux on x86-64") from None
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.partition(":")[2].split()}
    onednn, xla = caps(flags)
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=onednn)
    env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS", ""), f"--xla_cpu_max_isa={xla}"]))
    print(f"ONEDNN_MAX_CPU_ISA={onednn} XLA_FLAGS={env['XLA_FLAGS']!r} python -m pytest {' '.join(argv)}", flush=True)
    os.chdir(Path(__file__).resolve().parent.parent)
    os.execvpe(sys.executable, [sys.executable, "-m", "pytest", *argv], env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
