"""The notebooks in notebooks/: stored without outputs, and they run from top to bottom."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["quickstart", "evaluate"]
CELL_TIMEOUT_S = 300
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVALUATE_FIGURES = {
    "confusion_matrix.png",
    "reliability.png",
    "score_histograms.png",
    "embeddings_pca.png",
}


def _code_cells(name: str) -> list[dict]:
    notebook = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    cells = _code_cells(name)
    assert cells, f"{name}.ipynb has no code cells"
    for index, cell in enumerate(cells):
        assert cell["outputs"] == [], f"{name}.ipynb code cell {index} has stored outputs"
        assert cell["execution_count"] is None, f"{name}.ipynb code cell {index} was executed"


def _execute(name: str) -> None:
    """Run a notebook in a fresh python3 kernel with cwd notebooks/; fail on any error."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # Executed in memory only: the stored file is never rewritten.
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
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, f"{name}.ipynb produced errors: {errors}"


@pytest.fixture
def notebook_env(
    real_matcher: object,  # builds the real matcher first, so the kernels find a filled cache
    real_cache_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Environment for the kernels (they inherit it); returns the figures folder."""
    figures = tmp_path / "figures"
    monkeypatch.setenv("MLMATCH_CACHE_DIR", str(real_cache_dir))
    monkeypatch.setenv("MLMATCH_FIGURES", str(figures))
    return figures


@pytest.mark.slow
def test_quickstart_notebook_runs(notebook_env: Path) -> None:
    _execute("quickstart")


@pytest.mark.slow
def test_evaluate_notebook_runs_and_saves_figures(notebook_env: Path) -> None:
    _execute("evaluate")
    saved = {path.name for path in notebook_env.glob("*.png")}
    missing = EVALUATE_FIGURES - saved
    assert not missing, f"missing figures: {sorted(missing)}; saved: {sorted(saved)}"
    for name in sorted(EVALUATE_FIGURES):
        data = (notebook_env / name).read_bytes()
        assert data.startswith(PNG_MAGIC), f"{name} is not a PNG file"
        assert len(data) > 1000, f"{name} is nearly empty ({len(data)} bytes)"
