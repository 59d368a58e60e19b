"""This checkout as a newcomer gets it: a fresh clone, installed in a fresh venv, with no network.

The clone is ``git clone --no-hardlinks`` of the checkout (plus its uncommitted changes to tracked
files, so that what is being edited is what is tried; untracked files stay out, as from a real
clone). The venv is ``python -m venv``; a ``.pth`` file lends it this environment's installed
packages (the dependencies, and setuptools and wheel to build with), so nothing is downloaded, and
``pip install -e`` of the clone puts the ``runway-widget`` command and the package in it. Nothing
of the checkout is on its path: ``PYTHONPATH`` is cleared. So is ``PYTHONDONTWRITEBYTECODE``: a
newcomer's Python caches the clone's compiled modules, and each command need not compile them again.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_CLEARED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
_ORIGINS = ('command -v runway-widget; '
            'python -c "import runway_widget; print(runway_widget.__file__)"')


@dataclass(frozen=True)
class FreshInstall:
    clone: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with this venv activated: first on PATH, and no PYTHONPATH or pip settings."""
        env = {key: value for key, value in base.items()
               if key not in _CLEARED and not key.startswith("PIP_")}
        return {**env, "VIRTUAL_ENV": str(self.venv),
                "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}"}

    def assert_from_the_clone(self, env: Mapping[str, str], cwd: Path) -> None:
        """``runway-widget`` typed in ``env`` is this venv's, and it imports the clone's package."""
        done = subprocess.run(["bash", "--noprofile", "--norc", "-c", _ORIGINS], cwd=cwd,
                              env=dict(env), capture_output=True, text=True, check=True,
                              timeout=60)
        command, package = (Path(line) for line in done.stdout.splitlines())
        assert command == self.bin / "runway-widget", command
        assert command.read_text().startswith(f"#!{self.bin / 'python'}\n")
        assert package.is_relative_to(self.clone), package


def install_fresh_clone(folder: Path) -> FreshInstall:
    """Clone this checkout into ``folder`` and install it in a venv of its own there."""
    install = FreshInstall(folder / "clone", folder / "venv")
    _clone_checkout(install.clone)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(install.venv)],
                   check=True, capture_output=True, timeout=60)
    (_site_packages(install.venv) / "running_environment.pth").write_text(
        "".join(f"{folder}\n" for folder in _installed_packages()), encoding="utf-8")
    built = subprocess.run(
        [str(install.bin / "python"), "-m", "pip", "install", "--quiet", "--no-index",
         "--no-deps", "--no-build-isolation", "--no-cache-dir", "--disable-pip-version-check",
         "--editable", str(install.clone)],
        env=install.env(os.environ), capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, (
        "installing the clone with no network failed: its build needs setuptools and wheel in "
        f'this environment (pip install -e ".[test]")\n{built.stdout}{built.stderr}')
    return install


def _clone_checkout(dest: Path) -> None:
    top = _git("rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.decode().strip()).resolve() != ROOT:
        pytest.skip(f"{ROOT} is not a git work tree of its own, so it cannot be cloned "
                    f"({top.stderr.decode().strip() or top.stdout.decode().strip()})")
    cloned = subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)],
                            capture_output=True, timeout=120)
    assert cloned.returncode == 0, cloned.stderr.decode(errors="replace")
    head = _git("rev-parse", "HEAD").stdout
    assert subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True,
                          check=True).stdout == head
    changes = _git("diff", "HEAD", "--binary").stdout
    if changes:
        subprocess.run(["git", "-C", str(dest), "apply", "--binary", "-"], input=changes,
                       capture_output=True, check=True, timeout=60)


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("git") is None:
        pytest.skip("git is missing: the rehearsal starts from a clone of this checkout")
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=60)


def _site_packages(venv: Path) -> Path:
    (found,) = (venv / "lib").glob("python*/site-packages")
    return found


def _installed_packages() -> list[str]:
    """The folders this interpreter's installed packages live in (not this checkout)."""
    folders = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return [folder for folder in dict.fromkeys(folders) if Path(folder).is_dir()]
