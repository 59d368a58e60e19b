"""The package imports light and exposes the public names of the contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys, threading
before = threading.active_count()
import runway_widget
heavy = [m for m in ("requests", "ipywidgets", "av", "numpy", "PIL", "tqdm",
                     "runway_widget.demo", "runway_widget.widget", "runway_widget.client.apiframe")
         if m in sys.modules]
print(json.dumps({"heavy": heavy, "threads": threading.active_count() - before}))
"""


def test_import_is_light_and_starts_nothing():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out)
    assert result == {"heavy": [], "threads": 0}


def test_public_names_resolve():
    import runway_widget
    from runway_widget import errors

    for name in ("ApiframeClient", "GenerationRequest", "Task", "TaskTracker", "RunwayPanel",
                 "DemoServer", "JobStore", "WebhookReceiver"):
        assert getattr(runway_widget, name).__name__ == name
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.ApiframeError)


def test_unknown_attribute_is_an_attribute_error():
    import runway_widget

    try:
        runway_widget.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_ruff_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean():
    """The package is type-checked as configured in pyproject.toml ([tool.mypy])."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_ships_its_type_marker():
    import runway_widget

    assert (Path(runway_widget.__file__).parent / "py.typed").is_file()


def test_log_level_from_the_environment():
    probe = "import logging, runway_widget; print(logging.getLogger('runway_widget').level)"
    levels = {}
    for value in ("debug", "bogus", ""):
        env = {**os.environ, "RUNWAY_WIDGET_LOG": value}
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
        ).stdout
        levels[value] = int(out)
    assert levels == {"debug": 10, "bogus": 0, "": 0}


def test_the_readme_maps_every_module_and_no_other():
    """The module map in the README's "How it works" names each module of the tree, once."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## How it works\n", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^\| `([\w/]+\.py)` \|", section, flags=re.MULTILINE)
    package = ROOT / "runway_widget"
    tree = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name != "__init__.py" or path.parent == package
    }
    assert sorted(named) == sorted(set(named)), "a module named twice"
    assert set(named) == tree
