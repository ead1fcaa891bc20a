"""The Colab notebooks (notebooks/*.ipynb): stored without outputs, and each runs top to bottom in tiny mode.

Executing them is marked `notebooks` (deselected by default, see setup.cfg): `make test-notebooks` runs them.
Tiny mode is the notebooks' one switch, TFMOBILE_NOTEBOOK_TINY=1: every step shrinks to seconds.
"""

import glob
import os
import re
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
TRACE_LINES = 15
CELL_TIMEOUT = int(os.environ.get("TFMOBILE_NOTEBOOK_CELL_TIMEOUT", "600"))  # seconds per cell


def _ids(paths):
    return [os.path.basename(p) for p in paths]


def _read(path):
    import nbformat

    return nbformat.read(path, as_version=4)


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks/*.ipynb"


def test_notebooks_are_stored_without_outputs():
    dirty = []
    for path in NOTEBOOKS:
        nb = _read(path)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if cell.get("outputs") or cell.get("execution_count") is not None:
                dirty.append(f"{os.path.basename(path)} cell {index}")
    assert not dirty, ("committed with outputs or execution counts (clear them: `jupyter nbconvert "
                       "--clear-output --inplace notebooks/*.ipynb`): " + ", ".join(dirty))


def test_notebooks_are_valid_nbformat_4():
    import nbformat

    for path in NOTEBOOKS:
        nb = _read(path)
        assert nb.nbformat == 4, path
        nbformat.validate(nb)
        first = nb.cells[0]
        assert first.cell_type == "markdown" and "colab-badge.svg" in first.source, \
            f"{os.path.basename(path)}: the first cell is the title with a Colab badge"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_tiny_mode(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = _read(path)
    monkeypatch.setenv("TFMOBILE_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # kernel python3: jupyter_client starts a spec whose argv[0] is `python` with this interpreter (the venv's).
    # The kernel runs in the notebook's own folder (as Jupyter and Colab's checkout do), so `..` is the checkout;
    # the notebooks write only under ./nb_runs/ or a temporary folder.
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    message = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as e:
        message = _failure(path, nb, e)
    if message:  # outside the except block: the report is the cell and its error, not nbclient's chained dump
        pytest.fail(message, pytrace=False)


def _failure(path, nb, error) -> str:
    """The failing cell's index and source, then its error and the last lines of its traceback (no colours)."""
    name = os.path.basename(path)
    for index, cell in enumerate(nb.cells):
        outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
        failed = next((o for o in outputs if o.get("output_type") == "error"), None)
        if failed is not None:
            trace = "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", line) for line in failed.get("traceback", []))
            return (f"{name}: cell {index} failed\n--- source ---\n{cell.source}\n--- error ---\n"
                    f"{failed.get('ename')}: {failed.get('evalue')}\n--- traceback (last lines) ---\n"
                    + "\n".join(trace.splitlines()[-TRACE_LINES:]))
    return f"{name}: {type(error).__name__}: {str(error)[-3000:]}"  # a timeout: no error output in the cell
