"""Every notebook runs top to bottom in a real kernel with no API key, on the demo backend."""

from __future__ import annotations

import re
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
    if name == "06_running_a_workshop.ipynb":  # the rehearsal keeps out of the user's history
        assert not home.exists() or list(home.rglob("*")) == []


@pytest.mark.kernel
def test_the_quickstart_after_joining_says_and_uses_the_workshop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A participant who ran `runway-widget join` opens 01: the first cell names the
    workshop, and the panel's header does too."""
    from runway_widget.client.credentials import join_gateway
    from runway_widget.gateway import Limits
    from tests.gateway_support import demo_gateway

    monkeypatch.setenv("RUNWAY_WIDGET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNWAY_WIDGET_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("APIFRAME_API_KEY", raising=False)
    monkeypatch.delenv("APIFRAME_BASE_URL", raising=False)
    notebook = nbformat.read(NOTEBOOK_DIR / "01_quickstart.ipynb", as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    notebook.cells = [*cells[:2], nbformat.v4.new_code_cell(
        "print(panel.header.title.value)\npanel.close()")]
    with demo_gateway(tmp_path) as gateway:
        gateway.roster.add_join_code("ROOM-42", seats=2, limits=Limits(jobs=1))
        join_gateway(gateway.base_url, "ROOM-42", "alice")
        NotebookClient(notebook, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    said = notebook.cells[0].outputs[0]["text"]
    assert said == (f"backend: the workshop gateway {gateway.base_url}, as alice "
                    "(the instructor's quota)\n")
    assert "workshop · alice" in notebook.cells[2].outputs[0]["text"]


def test_sections_are_numbered_once_in_order() -> None:
    for name in NOTEBOOKS:
        notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        numbers = [int(match) for cell in notebook.cells if cell.cell_type == "markdown"
                   for match in re.findall(r"^## (\d+)\.", cell.source, re.MULTILINE)]
        assert numbers == list(range(1, len(numbers) + 1)), (name, numbers)


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
