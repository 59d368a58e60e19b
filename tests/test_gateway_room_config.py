"""The instructor's room config: defaults, group overrides, admins, gallery; bad files refused."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from runway_widget.gateway.db.roster import Limits
from runway_widget.gateway.room_config import DEFAULT_LIMITS, RoomConfig, RoomConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

TOML = """
[defaults]
jobs = 5
credits = 50

[groups.advanced]
jobs = 20
concurrent = 4

[groups.staff]
jobs = "unlimited"

[admins]
users = ["teacher"]
groups = ["tas"]

[gallery]
room = true
"""


def test_toml_and_json_say_the_same_thing(tmp_path):
    toml = tmp_path / "room.toml"
    toml.write_text(TOML)
    as_json = tmp_path / "room.json"
    as_json.write_text(json.dumps({
        "defaults": {"jobs": 5, "credits": 50},
        "groups": {"advanced": {"jobs": 20, "concurrent": 4}, "staff": {"jobs": None}},
        "admins": {"users": ["teacher"], "groups": ["tas"]},
        "gallery": {"room": True},
    }))
    assert RoomConfig.load(toml) == RoomConfig.load(as_json)


def test_defaults_then_the_most_generous_group(tmp_path):
    path = tmp_path / "room.toml"
    path.write_text(TOML)
    room = RoomConfig.load(path)
    assert room.limits_for([]) == Limits(5, 50, DEFAULT_LIMITS.concurrent)
    assert room.limits_for(["unrelated"]) == Limits(5, 50, DEFAULT_LIMITS.concurrent)
    assert room.limits_for(["advanced"]) == Limits(20, 50, 4)
    assert room.limits_for(["advanced", "staff"]) == Limits(None, 50, 4)  # unlimited wins
    assert room.gallery_room is True


def test_admins_by_name_or_group():
    room = RoomConfig.from_mapping({"admins": {"users": ["teacher"], "groups": ["tas"]}})
    assert room.is_admin("teacher", [])
    assert room.is_admin("sam", ["students", "tas"])
    assert not room.is_admin("alice", ["students"])


def test_a_limit_missing_from_defaults_keeps_its_built_in_value_and_unlimited_is_explicit():
    assert Limits(jobs=10, credits=100, concurrent=2) == DEFAULT_LIMITS
    room = RoomConfig.from_mapping({"defaults": {"jobs": 5}})
    assert room.limits_for([]) == Limits(5, DEFAULT_LIMITS.credits, DEFAULT_LIMITS.concurrent)
    lifted = RoomConfig.from_mapping({"defaults": {"credits": "unlimited", "concurrent": None}})
    assert lifted.limits_for([]) == Limits(DEFAULT_LIMITS.jobs, None, None)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    built_in = DEFAULT_LIMITS
    said = (
        f"keeps its built-in default ({built_in.jobs} jobs, {built_in.credits} credits, "
        f"{built_in.concurrent} concurrent)"
    )
    assert said in " ".join(readme.split())
    assert "missing limit: unlimited" not in readme


def test_no_file_means_the_built_in_defaults():
    room = RoomConfig.load(None)
    assert room.limits_for(["anything"]) == DEFAULT_LIMITS
    assert room.gallery_room is False


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"default": {"jobs": 1}}, "'default'"),
        ({"defaults": {"job": 1}}, "'job'"),
        ({"defaults": {"jobs": -1}}, "jobs"),
        ({"defaults": {"jobs": 2.5}}, "jobs"),
        ({"defaults": {"jobs": True}}, "jobs"),
        ({"groups": {"a": {"credits": "lots"}}}, "[groups.a]"),
        ({"groups": {"a": 3}}, "[groups.a]"),
        ({"admins": {"users": "teacher"}}, "users"),
        ({"gallery": {"room": "yes"}}, "room"),
        ([1, 2], "table"),
    ],
)
def test_bad_settings_are_refused_by_name(data, named):
    with pytest.raises(RoomConfigError) as caught:
        RoomConfig.from_mapping(data, source="room.json")
    assert named in str(caught.value) and "room.json" in str(caught.value)


def test_unreadable_or_malformed_files_say_which_file(tmp_path):
    with pytest.raises(RoomConfigError, match="cannot read"):
        RoomConfig.load(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[defaults\njobs = 1")
    with pytest.raises(RoomConfigError, match=r"broken\.toml is not valid TOML"):
        RoomConfig.load(broken)
    other = tmp_path / "room.yaml"
    other.write_text("defaults: {}")
    with pytest.raises(RoomConfigError, match=r"\.toml or \.json"):
        RoomConfig.load(other)


def test_the_readmes_example_is_a_valid_room_config_and_its_snippet_is_the_tested_file():
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    section = readme.split("## Running a workshop on JupyterHub", 1)[1].split("\n## ", 1)[0]
    toml_block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    room = RoomConfig.from_mapping(tomllib.loads(textwrap.dedent(toml_block)))
    assert room.limits_for(["advanced"]).jobs == 20 and room.is_admin("sam", ["tas"])

    snippet = (root / "docs" / "jupyterhub_config.py").read_text()
    python_block = textwrap.dedent(section.split("```python\n", 1)[1].split("```", 1)[0])
    shown = [line.strip() for line in python_block.splitlines() if "..." not in line]
    missing = [line for line in shown if line and line not in snippet]
    assert missing == [], "README lines not in docs/jupyterhub_config.py"


def test_serve_refuses_a_bad_config_or_a_hub_mode_outside_a_hub(tmp_path, monkeypatch, capsys):
    from runway_widget.cli.commands import main

    bad = tmp_path / "room.toml"
    bad.write_text("[defaults]\njobz = 3\n")
    assert main(["gateway", "serve", "--config", str(bad), "--upstream", "demo"]) == 1
    assert "unknown setting 'jobz'" in capsys.readouterr().err

    for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_SERVICE_URL"):
        monkeypatch.delenv(name, raising=False)
    pytest.importorskip("jupyterhub")
    assert main(["gateway", "serve", "--jupyterhub", "--upstream", "demo"]) == 1
    err = capsys.readouterr().err
    assert "JUPYTERHUB_API_TOKEN" in err and "c.JupyterHub.services" in err
