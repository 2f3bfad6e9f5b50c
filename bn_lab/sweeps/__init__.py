"""Sweeps: a grid of paired runs, resumable, run by an executor chosen by name.

manifest.py   sweep.json: read, checked, and whether a directory may hold this sweep
spec.py       the definition: a sweep file or `--grid` -> validated cells (pure, no TensorFlow)
driver.py     runs a sweep: which cells are done, the lock, progress, failures, the report
cell.py       one cell: a `bnlab run` into its directory (what every executor calls)
executors/    where cells run: in this process, in local processes, on Ray (registry.EXECUTORS)
"""
