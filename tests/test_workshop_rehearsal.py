"""The README from nothing: its first command, and a rehearsal of its "Running a workshop"
section, run word for word.

It starts from nothing: a fresh clone of this checkout, installed with ``pip install -e`` in a
fresh venv (offline: see fresh_install), and the README read is the clone's. Every fenced ``bash``
block of that section that follows a ``<!-- rehearsal: WHO -->`` comment is run as WHO types it:
in WHO's own folder, home, history and config (a laptop each), with that venv's ``runway-widget``
command first on PATH and no PYTHONPATH. The ``text`` block right after it is what it must print, in
that order (``…`` stands for anything; other lines may come between). A command that fails must
have printed one of the ``error:`` lines shown. ``<!-- rehearsal: WHO serves -->`` marks
``gateway serve``, which runs in the background until the end, as in a terminal of its own.

Only two things differ from what the README says: the port (a free one instead of 8765, which
another program may hold), and ``rwg_…``, which stands for the token ``token add WHO`` printed.
Demo jobs take a second (``RUNWAY_WIDGET_DEMO_SECONDS``) and the CLI polls often, so the whole
day takes seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fresh_install import FreshInstall
from tests.gateway_support import free_port

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

README = Path(__file__).resolve().parent.parent / "README.md"
README_PORT = "8765"
TOKEN_PLACEHOLDER = "rwg_…"
_STEP = re.compile(
    r"<!-- rehearsal: (?P<who>\w+)(?P<serves> serves)? -->\n```bash\n(?P<commands>.*?)```\n"
    r"(?:\n```text\n(?P<expected>.*?)```\n)?",
    re.DOTALL,
)
_RC = re.compile(r"^@@rehearsal rc=(\d+)@@$")


@dataclass
class Step:
    who: str
    serves: bool
    commands: list[str]
    expected: list[str]


def workshop_steps(readme: str) -> list[Step]:
    """The rehearsed steps of the README's workshop section, in order."""
    section = readme.split("\n## Running a workshop\n", 1)[1].split("\n## ", 1)[0]
    steps = []
    for match in _STEP.finditer(section):
        commands = [line for line in match["commands"].splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
        expected = [line for line in (match["expected"] or "").splitlines() if line.strip()]
        steps.append(Step(match["who"], bool(match["serves"]), commands, expected))
    return steps


def _matches(expected: str, line: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.rstrip().split("…"))
    return re.fullmatch(pattern, line.rstrip()) is not None


def _in_order(expected: list[str], lines: list[str]) -> list[str]:
    """The expected lines not found in ``lines`` in that order."""
    missing, at = [], 0
    for want in expected:
        found = next((i for i in range(at, len(lines)) if _matches(want, lines[i])), None)
        if found is None:
            missing.append(want)
        else:
            at = found + 1
    return missing


@dataclass
class Laptop:
    """One person's machine: a folder that is their home, working directory and config."""

    who: str
    folder: Path
    install: FreshInstall
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in self.install.env(os.environ).items()
               if not key.startswith(("APIFRAME_", "RUNWAY_", "JUPYTERHUB_"))}
        return {
            **env,
            "HOME": str(self.folder),
            "RUNWAY_WIDGET_HOME": str(self.folder / "home"),
            "RUNWAY_WIDGET_CONFIG_DIR": str(self.folder / "config"),
            "RUNWAY_WIDGET_DEMO_SECONDS": "1",
            "RUNWAY_WIDGET_POLL_INTERVAL": "0.2",
        }


class Rehearsal:
    def __init__(self, root: Path, port: int, install: FreshInstall) -> None:
        self.root = root
        self.port = port
        self.install = install
        self.laptops: dict[str, Laptop] = {}
        self.tokens: dict[str, str] = {}
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = root / "serve.log"

    def laptop(self, who: str) -> Laptop:
        if who not in self.laptops:
            folder = self.root / who
            folder.mkdir()
            self.laptops[who] = Laptop(who, folder, self.install)
        return self.laptops[who]

    def as_typed(self, text: str, who: str) -> str:
        text = text.replace(README_PORT, str(self.port))
        return text.replace(TOKEN_PLACEHOLDER, self.tokens[who]) if TOKEN_PLACEHOLDER in text \
            else text

    def run(self, step: Step) -> None:
        laptop = self.laptop(step.who)
        expected = [self.as_typed(line, step.who) for line in step.expected]
        commands = [self.as_typed(command, step.who) for command in step.commands]
        if step.serves:
            lines = self._serve(laptop, commands)
            assert _in_order(expected, lines) == [], "\n".join(lines)
            return
        script = "".join(f"{command}\nprintf '\\n@@rehearsal rc=%s@@\\n' $?\n"
                         for command in commands)
        done = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=laptop.folder,
                              env=laptop.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=120, check=True)
        outputs = self._per_command(done.stdout.decode(errors="replace"))
        assert len(outputs) == len(commands), outputs
        lines = [line for _rc, output in outputs for line in output]
        print(f"--- {step.who}\n" + "\n".join(lines))
        assert _in_order(expected, lines) == [], f"{step.who}: {commands}\n" + "\n".join(lines)
        shown_errors = [line for line in expected if line.startswith("error:")]
        for command, (rc, output) in zip(commands, outputs, strict=True):
            self._remember_token(command, output)
            if rc != 0:
                said = [line for line in output if any(_matches(e, line) for e in shown_errors)]
                assert said, f"{step.who}: {command!r} failed ({rc}) unlike the README:\n{output}"

    def _serve(self, laptop: Laptop, commands: list[str]) -> list[str]:
        (command,) = commands
        assert "gateway serve" in command
        with self.server_log.open("wb") as log:
            self.server = subprocess.Popen(
                ["bash", "--noprofile", "--norc", "-c", f"exec {command}"], cwd=laptop.folder,
                env=laptop.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "Ctrl-C stops it." not in self.server_log.read_text(errors="replace"):
            assert self.server.poll() is None, self.server_log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the gateway did not say it was ready"
            time.sleep(0.1)
        return self.server_log.read_text(errors="replace").splitlines()

    @staticmethod
    def _per_command(text: str) -> list[tuple[int, list[str]]]:
        outputs: list[tuple[int, list[str]]] = []
        lines: list[str] = []
        for line in re.split(r"[\r\n]+", text):
            marker = _RC.match(line)
            if marker:
                outputs.append((int(marker[1]), lines))
                lines = []
            elif line.strip():
                lines.append(line)
        return outputs

    def _remember_token(self, command: str, output: list[str]) -> None:
        added = re.search(r"gateway token add (\S+)", command)
        if added:
            (token,) = [line for line in output if re.fullmatch(r"rwg_\S+", line)]
            self.tokens[added[1]] = token

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)  # Ctrl-C, as the banner says
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(5)


@contextlib.contextmanager
def rehearsal(root: Path, install: FreshInstall) -> Iterator[Rehearsal]:
    room = Rehearsal(root, free_port(), install)
    try:
        yield room
    finally:
        room.stop()


def test_the_readme_rehearses_the_whole_day():
    """Three participants, the over-quota case, a revoke, the report and the export."""
    steps = workshop_steps(README.read_text(encoding="utf-8"))
    commands = [command for step in steps for command in step.commands]
    expected = [line for step in steps for line in step.expected]
    serving = [step for step in steps if step.serves]
    assert len(serving) == 1 and "--upstream demo" in serving[0].commands[0]
    assert {step.who for step in steps} - {"instructor"} == {"alice", "bob", "dave"}
    for command in ("gateway join add", "gateway token add", "runway-widget join",
                    "runway-widget generate", "gateway token revoke", "gateway report",
                    "gateway export"):
        assert any(command in line for line in commands), command
    assert any("quota reached" in line for line in expected)
    assert any("revoked your workshop token" in line for line in expected)


def test_the_readme_first_command_renders_a_clip_from_a_fresh_clone(fresh_install, tmp_path):
    """The README's first line, in a fresh venv of a fresh clone (installed offline by the
    fixture: the line's ``pip install -e .``), renders ``lighthouse.mp4`` on the demo backend."""
    readme = (fresh_install.clone / "README.md").read_text(encoding="utf-8")
    first = next(line for line in readme.splitlines() if line.startswith("pip install -e . && "))
    command = first.removeprefix("pip install -e . && ")
    assert command.startswith("runway-widget generate ") and "--demo" in command
    env = {key: value for key, value in fresh_install.env(os.environ).items()
           if not key.startswith(("APIFRAME_", "RUNWAY_"))}
    env.update(RUNWAY_WIDGET_HOME=str(tmp_path / "home"), RUNWAY_WIDGET_DEMO_SECONDS="0.5",
               RUNWAY_WIDGET_CONFIG_DIR=str(tmp_path / "config"),
               RUNWAY_WIDGET_POLL_INTERVAL="0.2")
    done = subprocess.run(["bash", "--noprofile", "--norc", "-c", command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "lighthouse.mp4").read_bytes()[4:8] == b"ftyp"
    fresh_install.assert_from_the_clone(env, tmp_path)


def test_a_rehearsal_from_nothing_runs_the_readme_word_for_word(fresh_install, tmp_path):
    steps = workshop_steps((fresh_install.clone / "README.md").read_text(encoding="utf-8"))
    assert steps == workshop_steps(README.read_text(encoding="utf-8"))
    with rehearsal(tmp_path, fresh_install) as room:
        laptop = room.laptop("instructor")
        fresh_install.assert_from_the_clone(laptop.env, laptop.folder)
        for step in steps:
            room.run(step)
        assert room.server is not None and room.server.poll() is None
        room.stop()
        assert room.server.returncode == 0, room.server_log.read_text()
    clips = zipfile.ZipFile(tmp_path / "instructor" / "clips.zip").namelist()
    assert len([name for name in clips if name.endswith(".mp4")]) == 3
    for who, video in (("alice", "boat.mp4"), ("bob", "kite.mp4"), ("dave", "lighthouse.mp4")):
        assert (tmp_path / who / video).read_bytes()[4:8] == b"ftyp"
    assert "Traceback" not in room.server_log.read_text()
