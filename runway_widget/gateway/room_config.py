"""The instructor's room settings (``gateway serve --config FILE``): quotas, admins, gallery.

A TOML or JSON file (chosen by its suffix; JSON's keys are the same)::

    [defaults]            # every participant's quota (a missing limit: the built-in one)
    jobs = 5
    credits = 50          # one credit per second of video
    concurrent = 2        # jobs running at once

    [groups.advanced]     # JupyterHub groups: per-group overrides
    jobs = 20

    [admins]
    users = ["teacher"]   # gateway admins besides the hub's own admins
    groups = ["tas"]

    [gallery]
    room = false          # true: every participant sees the whole room's clips

A limit missing from ``[defaults]`` (or no file at all) keeps the built-in default,
`DEFAULT_LIMITS`: 10 jobs, 100 credits, 2 at once. The gateway spends a paid key, so a
room is never without a quota by omission; ``jobs = "unlimited"`` (JSON: ``null``) lifts
a limit on purpose. A hub user in several groups gets, for each limit, the most generous
value among their groups (unlimited beats any number); limits no group sets come from
``[defaults]``. Unknown keys are refused, so a typo never silently changes a quota.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .db.roster import Limits

__all__ = ["DEFAULT_LIMITS", "RoomConfig", "RoomConfigError"]

DEFAULT_LIMITS = Limits(jobs=10, credits=100, concurrent=2)
LIMIT_KEYS = ("jobs", "credits", "concurrent")
SECTIONS = ("defaults", "groups", "admins", "gallery")


class RoomConfigError(ValueError):
    """The config file cannot be used; the message names the file and the offending key."""


@dataclass(frozen=True)
class RoomConfig:
    """Quotas for hub users, who administers the gateway, and what the gallery shows."""

    defaults: Limits = DEFAULT_LIMITS
    groups: Mapping[str, Mapping[str, int | None]] = field(default_factory=dict)
    admin_users: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset()
    gallery_room: bool = False

    @classmethod
    def load(cls, path: str | Path | None) -> RoomConfig:
        """The settings in ``path`` (``.toml`` or ``.json``); the defaults when None."""
        if path is None:
            return cls()
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RoomConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
        try:
            data = _parse(path, text)
        except ValueError as exc:
            raise RoomConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from None
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "the config") -> RoomConfig:
        section = _Section(data, source)
        section.only(SECTIONS)
        defaults = _limits(section.table("defaults"))
        groups = {
            str(name): _limits(_Section(table, f"{source} [groups.{name}]"))
            for name, table in section.table("groups").items()
        }
        admins = section.table("admins")
        admins.only(("users", "groups"))
        gallery = section.table("gallery")
        gallery.only(("room",))
        return cls(
            defaults=Limits(**{k: defaults.get(k, getattr(DEFAULT_LIMITS, k)) for k in LIMIT_KEYS}),
            groups=groups,
            admin_users=admins.names("users"),
            admin_groups=admins.names("groups"),
            gallery_room=gallery.flag("room"),
        )

    def limits_for(self, groups: Iterable[str]) -> Limits:
        """The quota of a hub user in ``groups``: defaults, raised by the user's groups."""
        chosen: dict[str, int | None] = {k: getattr(self.defaults, k) for k in LIMIT_KEYS}
        overrides = [self.groups[g] for g in groups if g in self.groups]
        for key in LIMIT_KEYS:
            values = [o[key] for o in overrides if key in o]
            if values:
                chosen[key] = None if None in values else max(v for v in values if v is not None)
        return Limits(**chosen)

    def is_admin(self, name: str, groups: Iterable[str]) -> bool:
        """Named as an admin here, by name or through a group (the hub's admins are too)."""
        return name in self.admin_users or not self.admin_groups.isdisjoint(groups)


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        return json.loads(text)
    if path.suffix.lower() != ".toml":
        raise RoomConfigError(f"{path}: the config file must end in .toml or .json")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise RoomConfigError(
                "reading TOML on Python 3.10 needs tomli (pip install tomli), or use JSON"
            ) from None
    return tomllib.loads(text)


def _limits(section: _Section) -> dict[str, int | None]:
    """The limits a table sets; a limit of ``"unlimited"`` (or JSON null) lifts it."""
    section.only(LIMIT_KEYS)
    return {key: section.limit(key) for key in LIMIT_KEYS if key in section.data}


class _Section:
    """One table of the file, with checks that name the table in their message."""

    def __init__(self, data: Any, source: str) -> None:
        if not isinstance(data, dict):
            raise RoomConfigError(f"{source} must be a table of settings")
        self.data = data
        self.source = source

    def only(self, allowed: Iterable[str]) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise RoomConfigError(
                f"{self.source}: unknown setting {unknown[0]!r} (known: {', '.join(allowed)})"
            )

    def table(self, key: str) -> _Section:
        return _Section(self.data.get(key, {}), f"{self.source} [{key}]")

    def items(self) -> Iterable[tuple[str, Any]]:
        return self.data.items()

    def get(self, key: str, default: Any) -> Any:
        return self.data.get(key, default)

    def limit(self, key: str) -> int | None:
        value = self.data[key]
        if value is None or value == "unlimited":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RoomConfigError(
                f"{self.source}: {key} must be a whole number >= 0 or \"unlimited\", not {value!r}"
            )
        return value

    def names(self, key: str) -> frozenset[str]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RoomConfigError(f"{self.source}: {key} must be a list of names")
        return frozenset(value)

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            raise RoomConfigError(f"{self.source}: {key} must be true or false, not {value!r}")
        return value
