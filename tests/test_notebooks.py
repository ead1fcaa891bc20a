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


def _sync_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebook_sync", os.path.join(ROOT, "notebooks", "sync.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebooks_share_one_setup_cell_and_the_repository_badge():
    sync = _sync_module()
    assert sync.out_of_date() == [], "run `python notebooks/sync.py`"
    repo = sync.repository()
    for path in NOTEBOOKS:
        name = os.path.splitext(os.path.basename(path))[0]
        nb = _read(path)
        assert sync.badge(name, repo) in nb.cells[0].source
        setup = next(c for c in nb.cells if c.cell_type == "code").source
        assert f'NOTEBOOK = "{name}"' in setup and f'TFMOBILE_SOURCE = "git+{repo}"' in setup


def test_sync_rewrites_a_stale_notebook(tmp_path, monkeypatch):
    import nbformat

    sync = _sync_module()
    stale = nbformat.read(NOTEBOOKS[0], as_version=4)
    setup = next(c for c in stale.cells if c.cell_type == "code")
    setup.source = "print('an edited setup cell')"
    setup.outputs = [nbformat.v4.new_output("stream", name="stdout", text="x\n")]
    setup.execution_count = 3
    stale.cells[0].source = stale.cells[0].source.replace("/blob/main/", "/blob/old/")
    path = tmp_path / os.path.basename(NOTEBOOKS[0])
    nbformat.write(stale, str(path))
    monkeypatch.setattr(sync, "HERE", str(tmp_path))
    assert sync.out_of_date() == [path.name]
    assert sync.main([]) == 0
    assert sync.out_of_date() == []
    fixed = nbformat.read(str(path), as_version=4)
    assert fixed.cells == nbformat.read(NOTEBOOKS[0], as_version=4).cells


def test_library_plots_leave_the_matplotlib_backend_alone(tmp_path):
    """Notebooks draw inline: a library plot that switched the backend (matplotlib.use) would break them."""
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, "tfmobile")):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                if re.search(r"matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot", text):
                    offenders.append(os.path.relpath(os.path.join(folder, name), ROOT))
    assert not offenders, "use tfmobile.utils.new_figure / save_figure instead of pyplot: " + ", ".join(offenders)
    script = f"""
import matplotlib
matplotlib.use("pdf")
from tfmobile.nas.search import plot_search
from tfmobile.quickstart import plot_curve
plot_search({str(tmp_path / "search.png")!r}, {{"evolution": [{{"evaluations": 1, "best_fitness": 2.0}}]}}, 3.0)
plot_curve([{{"steps": 10, "minutes": 0.5, "val_loss": 4.0, "loss": 4.5}}], 1.0, {str(tmp_path / "c.png")!r}, "t")
print(matplotlib.get_backend())
"""
    import subprocess

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "pdf"
    for name in ("search.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_long_sequences_fallback_table_is_the_benchmarks_result():
    """06 shows the memory benchmark's numbers without a checkout from a table in the notebook: it must be the
    committed result, to the 0.1 MiB it prints."""
    import ast
    import json

    nb = _read(os.path.join(ROOT, "notebooks", "06_long_sequences.ipynb"))
    cell = next(c.source for c in nb.cells if "table = {" in c.source)
    start = cell.index("table = {") + len("table = ")
    table = ast.literal_eval(cell[start:cell.index("}", start) + 1])
    saved = json.load(open(os.path.join(ROOT, "benchmarks", "results", "reformer_memory.json"), encoding="utf-8"))
    expected = {}
    for p in saved["lengths"]:
        if p["status"] == "ok":
            expected.setdefault(p["model"], []).append(
                (p["length"], round(p["tensor_peak_mib"], 1), round(p["vmhwm_mib"], 1)))
    assert {m: sorted(rows) for m, rows in table.items()} == {m: sorted(rows) for m, rows in expected.items()}


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_tiny_mode(path, monkeypatch):
    monkeypatch.setenv("TFMOBILE_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    message = _execute(path, _read(path))
    if message:  # outside the except block: the report is the cell and its error, not nbclient's chained dump
        pytest.fail(message, pytrace=False)


def test_a_failing_cell_is_reported_with_its_source_and_error(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("def broken():\n    return 1 / 0\nbroken()"),
                                         nbformat.v4.new_code_cell("print('never runs')")])
    message = _execute(str(tmp_path / "broken.ipynb"), nb)
    assert message.startswith("broken.ipynb: cell 1 failed\n--- source ---\ndef broken():\n    return 1 / 0\nbroken()")
    assert "ZeroDivisionError: division by zero" in message and "\x1b[" not in message
    assert "return 1 / 0" in message.split("--- traceback (last lines) ---")[1]
    assert _execute(str(tmp_path / "fine.ipynb"), nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])) is None


def _execute(path, nb):
    """Run `nb` top to bottom in a fresh kernel in `path`'s folder; None, or the report of the cell that failed."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    # kernel python3: jupyter_client starts a spec whose argv[0] is `python` with this interpreter (the venv's).
    # The kernel runs in the notebook's own folder (as Jupyter and Colab's checkout do), so `..` is the checkout;
    # in tiny mode the notebooks write only to a temporary folder.
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as e:
        return _failure(path, nb, e)
    return None


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
