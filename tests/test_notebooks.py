"""Every notebook runs top to bottom in a real kernel with no API key, on the demo backend."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = [
    "01_quickstart.ipynb",
    "02_image_to_video.ipynb",
    "03_video_to_video.ipynb",
    "04_workshop_gallery.ipynb",
    "05_python_client.ipynb",
    "06_running_a_workshop.ipynb",
]


def _stderr(notebook: nbformat.NotebookNode) -> list[str]:
    return [
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    ]


@pytest.mark.kernel
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_without_a_key(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executed as a reader would (Run All), in a scratch folder, with short demo jobs."""
    home = tmp_path / "home"
    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(home))
    monkeypatch.setenv("RUNWAY_WIDGET_DEMO_SECONDS", "1.5")
    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    monkeypatch.delenv("APIFRAME_BASE_URL", raising=False)
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)

    NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    assert _stderr(notebook) == []
    left_behind = [
        path.relative_to(tmp_path).as_posix()
        for path in tmp_path.rglob("*")
        if path.is_file() and home not in path.parents and path.suffix != ".mp4"
    ]
    assert left_behind == [], "only downloaded clips (*.mp4, ignored by git) may stay"


def test_every_notebook_is_listed_and_stored_without_outputs() -> None:
    """The repository keeps notebooks clean: no outputs, no counts, no saved widget state."""
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == NOTEBOOKS
    for name in NOTEBOOKS:
        notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        nbformat.validate(notebook)
        assert "widgets" not in notebook.metadata, name
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{name}: a cell has outputs"
                assert cell.execution_count is None, f"{name}: a cell has an execution count"
