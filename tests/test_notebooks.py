"""The notebooks in notebooks/: stored executed, with outputs, and they still run top to bottom.

The stored outputs are what a repository viewer shows; the slow tests run each notebook again in
a fresh kernel and check that it still produces the same kinds of output, cell by cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
NAMES = ["quickstart", "evaluate"]
CELL_TIMEOUT_S = 300
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What the evaluate notebook saves with fig.savefig (EvaluationReport.plot_confusion and
# plot_reliability) into $MLMATCH_FIGURES.
EVALUATE_FIGURES = {"confusion_matrix.png", "reliability.png"}
# The extras each notebook needs, which its first cell must name.
EXTRAS = {"quickstart": "pandas", "evaluate": "pandas,plot"}
# The HTML that each notebook's rich displays must show (classes set by mlmatch.display and the
# report page's title), so a notebook that stops displaying them fails.
RICH_DISPLAYS = {
    "quickstart": ["mlmatch-classification", "mlmatch report: proposals-scored.csv"],
    "evaluate": ["mlmatch-evaluation", "mlmatch-health"],
}


def _code_cells(name: str) -> list[dict]:
    notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_executed_with_outputs(name: str) -> None:
    cells = _code_cells(name)
    assert cells, f"{name}.ipynb has no code cells"
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{name}.ipynb was not run top to bottom"
    outputs = [output for cell in cells for output in cell["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"], f"{name}.ipynb stored errors"
    assert sum(bool(cell["outputs"]) for cell in cells) >= len(cells) // 2
    _assert_rich_displays(name, outputs)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_says_which_extras_it_needs(name: str) -> None:
    notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    first = "".join(notebook["cells"][0]["source"])
    assert notebook["cells"][0]["cell_type"] == "markdown"
    assert f'pip install "mlmatch[{EXTRAS[name]}]"' in first
    assert f'pip install -c constraints.txt ".[{EXTRAS[name]}]"' in first


def _kinds(outputs: list[dict]) -> set[tuple[str, ...]]:
    """What a cell's outputs are made of: their types, stream names and MIME types."""
    return {
        (output["output_type"], output.get("name", ""), *sorted(output.get("data", {})))
        for output in outputs
    }


def _execute(name: str) -> list[dict]:
    """Run a notebook in a fresh python3 kernel with cwd notebooks/; fail on any error.

    Returns the outputs of its code cells, after checking that each cell produced the same kinds
    of output as the stored one (so the stored outputs are not stale).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # Executed in memory only: the stored file is never rewritten.
    before = _listing(NOTEBOOKS)
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{name}.ipynb failed:\n{error}")
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    errors = [output for output in outputs if output.output_type == "error"]
    assert not errors, f"{name}.ipynb produced errors: {errors}"
    added = _listing(NOTEBOOKS) - before
    assert not added, f"{name}.ipynb wrote into notebooks/: {sorted(added)}"
    stored = _code_cells(name)
    fresh = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for index, (old, new) in enumerate(zip(stored, fresh, strict=True)):
        assert _kinds(new.outputs) == _kinds(old["outputs"]), (
            f"{name}.ipynb code cell {index} now outputs {_kinds(new.outputs)}, but the stored "
            f"notebook has {_kinds(old['outputs'])}: execute it again and store it"
        )
    return outputs


def _listing(folder: Path) -> set[str]:
    """Every file under ``folder`` (Jupyter's checkpoints aside), relative to it."""
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and ".ipynb_checkpoints" not in path.parts
    }


def _assert_rich_displays(name: str, outputs: list[dict]) -> None:
    html = "\n".join(
        str(output.get("data", {}).get("text/html", ""))
        for output in outputs
        if output.get("output_type") in ("display_data", "execute_result")
    )
    for marker in RICH_DISPLAYS[name]:
        assert marker in html, f"{name}.ipynb showed no HTML containing {marker!r}"


@pytest.fixture
def notebook_env(
    real_matcher: object,  # builds the real matcher first, so the kernels find a filled cache
    real_cache_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Environment for the kernels (they inherit it); returns the figures folder.

    The kernels' temporary folder is ``tmp_path/tmp``, where what they leave behind shows.
    """
    figures = tmp_path / "figures"
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("MLMATCH_CACHE_DIR", str(real_cache_dir))
    monkeypatch.setenv("MLMATCH_FIGURES", str(figures))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    return figures


@pytest.mark.slow
def test_quickstart_notebook_runs_and_removes_its_scratch_folder(notebook_env: Path) -> None:
    _assert_rich_displays("quickstart", _execute("quickstart"))
    left = sorted(path.name for path in (notebook_env.parent / "tmp").glob("mlmatch-quickstart-*"))
    assert not left, f"quickstart.ipynb left its scratch folders behind: {left}"


@pytest.mark.slow
def test_evaluate_notebook_runs_and_saves_figures(notebook_env: Path) -> None:
    _assert_rich_displays("evaluate", _execute("evaluate"))
    saved = {path.name for path in notebook_env.glob("*.png")}
    missing = EVALUATE_FIGURES - saved
    assert not missing, f"missing figures: {sorted(missing)}; saved: {sorted(saved)}"
    for name in sorted(EVALUATE_FIGURES):
        data = (notebook_env / name).read_bytes()
        assert data.startswith(PNG_MAGIC), f"{name} is not a PNG file"
        assert len(data) > 1000, f"{name} is nearly empty ({len(data)} bytes)"
