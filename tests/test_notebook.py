"""examples/lesson.ipynb runs top to bottom in a real Jupyter kernel, and says what it should."""

import shutil
import signal
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # every test here trains

ROOT = Path(__file__).resolve().parent.parent


def test_the_lesson_notebook_ships_with_its_outputs():
    notebook = nbformat.read(ROOT / "examples" / "lesson.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs for cell in code[1:])  # every cell but the first (imports) shows what it gave
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]


def test_the_lesson_notebook_runs_and_shows_its_results(tmp_path):
    """Anywhere: it runs a bundled config by name, results under its own directory."""
    shutil.copy(ROOT / "examples" / "lesson.ipynb", tmp_path)
    notebook = nbformat.read(tmp_path / "lesson.ipynb", as_version=4)
    for cell in notebook.cells:  # run from scratch, not from the shipped outputs
        if cell.cell_type == "code":
            cell.outputs = []
    # nbclient leaves this process's SIGINT handler changed (Jupyter's kernel client, not bn_lab):
    # put back, so that the tests after this one in the worker see Ctrl-C as bnlab does.
    handler = signal.getsignal(signal.SIGINT)
    try:
        NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        signal.signal(signal.SIGINT, handler)

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "Run('results/notebook/smoke/" in text
    assert "with_bn     learned" in text
    assert "without BN: diverged at step" in text
    assert "effective learning rate per layer: 1.0e-04, 8." in text  # lr 2 over norms of ~140 and ~50, squared
    assert "dead units in the last hidden layer:" in text
    assert "single images, training mode" in text
    assert text.count("seed ") >= 3
    assert text.rstrip().endswith("True")  # bn_lab.load read back the same numbers
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # run.plot() and diagnostics_plot(), once each
    assert (tmp_path / "results" / "notebook" / "smoke").is_dir()
