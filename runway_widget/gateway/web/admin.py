"""``/admin``: the instructor's page. The report, and the controls the CLI has.

Like JupyterHub's admin page (a table of users, each with its actions) and LiteLLM's keys
view (each key's budget, editable in place): the queue in front of the upstream (its
length, longest wait and limit; each waiting job in order, its owner put first or back in
line), one table of participants (quota, use, jobs by state, how often each limit refused
them; change the quota, give jobs or credits back, revoke or restore), one of join codes
(shown in full; close, reopen, rotate, seats), and the latest clips (hide from the
gallery, show again). Every change is a plain form POST
carrying the page's XSRF token, answered by a redirect back with a one-line message; the
page's script re-reads the page every few seconds and updates the numbers in place, leaving
any form being filled in alone. The numbers come from the same `Roster.report` as
``gateway report``. Downloads: the report (CSV, JSON) and every clip as one zip.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from tornado.web import HTTPError

from ...errors import plural
from ..db.roster import RosterError
from ..export import write_export
from .pages import JsonPageHandler, PageContext, PageHandler
from .report import limit_text, over_quota_text, quota_text, report_csv

__all__ = ["admin_routes"]

FLASH_COOKIE = "runway-gateway-admin-said"
LIVE_MS = 3000
CLIPS_SHOWN = 60
CHUNK = 256 * 1024
UNLIMITED_WORDS = ("", "unlimited", "none", "∞")


class AdminPage(PageHandler):
    """``GET /admin``: participants, join codes and clips, with their controls."""

    place = "the workshop admin"

    async def get(self) -> None:
        self.require_admin()
        rows, codes, clips = await self.run_db(self._read)
        queue, waiting = await self.run_db(self._queue)
        said = self.get_signed_cookie(FLASH_COOKIE, max_age_days=1)
        if said:
            self.clear_cookie(FLASH_COOKIE, path=self._admin_path())
        self.render(
            "admin.html",
            title="Workshop admin",
            rows=rows,
            codes=[code for code in codes if not code["personal"]],
            personal={code["owner_id"]: code for code in codes if code["personal"]},
            clips=clips,
            said=json.loads(said) if said else None,
            live_ms=LIVE_MS,
            join_url=self.pages.join_url(),
            limit=limit_text,
            over_quota=over_quota_text,
            queue=queue,
            waiting=waiting,
        )

    def _queue(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The queue in front of the upstream: its state, and each job waiting in order."""
        queue = self.pages.queue
        return (None, []) if queue is None else (queue.status(), queue.waiting())

    def _read(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        roster = self.pages.roster
        return roster.report(), roster.codes.listing(), self.pages.feed.listing(limit=CLIPS_SHOWN)

    def _admin_path(self) -> str:
        return self.settings.get("gateway_prefix", "") + "/admin"


class AdminAction(PageHandler):
    """``POST /admin/<participant|code|clip>/<id>/<action>``: one change, then back."""

    place = "the workshop admin"

    async def post(self, kind: str, number: str, action: str) -> None:
        self.require_admin()
        change = _ACTIONS.get((kind, action))
        if change is None:
            raise HTTPError(404, "no such action")
        form = {
            key: self.get_body_argument(key) for key in FIELDS if key in self.request.body_arguments
        }
        try:
            said = await self.run_db(change, self.pages, int(number), form)
            kind_said = "done"
        except (RosterError, ValueError) as exc:
            said, kind_said = str(exc), "error"
        path = self.settings.get("gateway_prefix", "") + "/admin"
        self.set_signed_cookie(
            FLASH_COOKIE,
            json.dumps({"kind": kind_said, "text": said}),
            expires_days=None,
            path=path,
            httponly=True,
            samesite="Strict",
            secure=self.request.protocol == "https",
        )
        self.redirect(f"{path}#{kind}-{number}", status=303)


# -- each change runs in the database pool and says what it did ------------------------------

Form = Mapping[str, str]
FIELDS = ("jobs", "credits", "concurrent", "seats", "to")


def _set_quota(pages: PageContext, participant_id: int, form: Form) -> str:
    change = {key: _limit(form, key) for key in ("jobs", "credits", "concurrent") if key in form}
    if not change:
        raise ValueError("send jobs, credits or concurrent (empty: no limit)")
    row = _known(pages.roster.controls.set_quota(participant_id, change))
    return f"{row['name']}: quota now {quota_text(row)}"


def _give_back(pages: PageContext, participant_id: int, form: Form) -> str:
    jobs, credits = _count(form, "jobs"), _count(form, "credits")
    if not jobs and not credits:
        raise ValueError("give back at least one job or credit")
    row = _known(pages.roster.controls.give_back(participant_id, jobs, credits))
    given = f"{plural(jobs, 'job')} and {plural(credits, 'credit')}"
    return f"{row['name']}: {given} given back; {quota_text(row)}"


def _revoke(pages: PageContext, participant_id: int, form: Form) -> str:
    name = _known(pages.roster.controls.set_revoked(participant_id, True))
    door = pages.roster.door_left_open(participant_id)
    if door is None:
        return f"revoked {name}: refused from their next request"
    return (
        f"revoked {name}: refused from their next request. {door[0]} still has "
        f"{plural(door[1], 'free seat')}: their name and their machine are refused, but "
        "another name from another machine would get in. Close it once everyone has joined."
    )


def _restore(pages: PageContext, participant_id: int, form: Form) -> str:
    return f"restored {_known(pages.roster.controls.set_revoked(participant_id, False))}"


def _first(pages: PageContext, participant_id: int, form: Form) -> str:
    name = pages.queue.put_first(participant_id, True) if pages.queue is not None else None
    return f"{_known(name)}'s jobs go first in the queue (a demo on the projector)"


def _back_in_line(pages: PageContext, participant_id: int, form: Form) -> str:
    name = pages.queue.put_first(participant_id, False) if pages.queue is not None else None
    return f"{_known(name)}'s jobs are back in line with everyone"


def _close(pages: PageContext, code_id: int, form: Form) -> str:
    code = _code(pages, code_id)
    pages.roster.codes.set_closed(code_id, True)
    return f"closed {code}: nobody joins with it until you reopen it"


def _reopen(pages: PageContext, code_id: int, form: Form) -> str:
    code = _code(pages, code_id)
    pages.roster.codes.set_closed(code_id, False)
    return f"reopened {code}"


def _rotate(pages: PageContext, code_id: int, form: Form) -> str:
    code = _code(pages, code_id)
    new = pages.roster.codes.rotate(code_id, form.get("to", "").strip() or None)
    return f"{code} is now {new}: the old code no longer works; those who joined stay"


def _seats(pages: PageContext, code_id: int, form: Form) -> str:
    code = _code(pages, code_id)
    seats = _count(form, "seats")
    if seats < 1:
        raise ValueError("seats: at least one")
    pages.roster.codes.change(code_id, seats=seats, quota={})
    return f"{code}: {plural(seats, 'seat')}"


def _hide(pages: PageContext, job_id: int, form: Form) -> str:
    if not pages.feed.set_hidden(job_id, True):
        raise ValueError(f"no finished clip {job_id}")
    return f"clip {job_id} hidden from the gallery (projectors drop it within seconds)"


def _unhide(pages: PageContext, job_id: int, form: Form) -> str:
    if not pages.feed.set_hidden(job_id, False):
        raise ValueError(f"no finished clip {job_id}")
    return f"clip {job_id} is in the gallery again"


_ACTIONS: dict[tuple[str, str], Callable[[PageContext, int, Form], str]] = {
    ("participant", "quota"): _set_quota,
    ("participant", "give-back"): _give_back,
    ("participant", "revoke"): _revoke,
    ("participant", "restore"): _restore,
    ("participant", "first"): _first,
    ("participant", "back-in-line"): _back_in_line,
    ("code", "close"): _close,
    ("code", "reopen"): _reopen,
    ("code", "rotate"): _rotate,
    ("code", "seats"): _seats,
    ("clip", "hide"): _hide,
    ("clip", "unhide"): _unhide,
}


def _limit(form: Form, key: str) -> int | None:
    """A quota field: a whole number, or empty (or "unlimited") for no limit."""
    text = form[key].strip().lower()
    return None if text in UNLIMITED_WORDS else _whole(key, text)


def _count(form: Form, key: str) -> int:
    return _whole(key, form.get(key, "").strip() or "0")


def _whole(key: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise ValueError(f"{key}: a whole number, 0 or more (not {text[:20]!r})")
    return int(text)


def _code(pages: PageContext, code_id: int) -> str:
    code = pages.roster.codes.get(code_id)
    if code is None:
        raise ValueError("no such join code")
    return str(code["code"] or code["hint"])


class AdminReport(JsonPageHandler):
    """``/admin/report.json`` and ``/admin/report.csv`` (admins only)."""

    async def get(self, kind: str) -> None:
        self.require_admin()
        rows = await self.run_db(self.pages.roster.report)
        if kind == "json":
            self.reply(rows)
            return
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="workshop-report.csv"')
        self.finish(report_csv(rows))


class AdminExport(JsonPageHandler):
    """``/admin/export.zip``: every clip shown in the gallery, with prompts and names."""

    async def get(self) -> None:
        self.require_admin()
        path = await self.run_db(self._build)
        try:
            self.set_header("Content-Type", "application/zip")
            self.set_header("Content-Disposition", 'attachment; filename="workshop-clips.zip"')
            with open(path, "rb") as zipped:
                while chunk := zipped.read(CHUNK):
                    self.write(chunk)
                    await self.flush()
        finally:
            os.unlink(path)

    def _build(self) -> str:
        clips = self.pages.feed.listing()
        with tempfile.NamedTemporaryFile("wb", suffix=".zip", delete=False) as out:
            write_export(clips, out)
        return out.name


def _known(value: Any) -> Any:
    if value is None:
        raise ValueError("no such participant")
    return value


def admin_routes(prefix: str, args: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    return [
        (prefix + "/admin", AdminPage, args),
        (prefix + r"/admin/(participant|code|clip)/(\d{1,12})/([a-z-]{1,20})", AdminAction, args),
        (prefix + r"/admin/report\.(json|csv)", AdminReport, args),
        (prefix + r"/admin/export\.zip", AdminExport, args),
    ]
