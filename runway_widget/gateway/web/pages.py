"""The gateway's browser pages: the live ``/gallery`` and the instructor's ``/admin`` report.

Pages identify their visitor through a `BrowserLogin` (hub OAuth, or a token once and then a
cookie). Admins see the whole room; a participant sees their own clips, or the room's when
the instructor's config says ``[gallery] room = true``. Templates autoescape every value;
the gallery's script renders the feed with ``textContent`` only.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from ..db.roster import Participant, Roster
from .gallery import ClipFeed, parse_cursor
from .login import BrowserLogin
from .report import report_csv

__all__ = ["ASSETS", "PageContext", "page_routes"]

ASSETS = Path(__file__).with_name("templates")
POLL_MS = 1500


@dataclass
class PageContext:
    """What the pages need, built once by the application."""

    login: BrowserLogin
    feed: ClipFeed
    roster: Roster
    executor: Executor | None
    room_gallery: bool = False


class PageHandler(RequestHandler):
    """Identifies the visitor before any method runs; an unknown one is sent to sign in."""

    participant: Participant | None = None

    def initialize(self, pages: PageContext) -> None:
        self.pages = pages

    def get_template_path(self) -> str:
        return str(ASSETS)

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace["assets"] = self.settings.get("gateway_prefix", "") + "/assets/"
        return namespace

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    async def prepare(self) -> None:
        self.participant = await self.pages.login.identify(self)
        if self.participant is None:
            self.refuse()
            return
        if self.get_query_argument("token", None) is not None:
            self.redirect(self.request.path)  # the token has become a cookie: drop it

    def refuse(self) -> None:
        self.pages.login.sign_in(self)

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        """As tornado's, but a refusal never quotes the value (it may be a ``?token=``)."""
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, f"{name or 'the address'} is not valid UTF-8") from None

    @property
    def who(self) -> Participant:
        assert self.participant is not None
        return self.participant

    def sees_room(self) -> bool:
        """Admins always; participants when the instructor shares the room's gallery."""
        return self.who.admin or self.pages.room_gallery

    def require_admin(self) -> None:
        if not self.who.admin:
            raise HTTPError(403, "only the workshop's admins see this page")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, HTTPError) and exc.log_message else None
        self.render("message.html", title=self._reason, message=message or self._reason)

    async def run_db(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pages.executor, lambda: call(*args, **kwargs))


class JsonPageHandler(PageHandler):
    """A JSON endpoint behind the same sign-in, which answers 401 rather than redirecting."""

    def refuse(self) -> None:
        raise HTTPError(401, "sign in first")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, HTTPError) and exc.log_message else None
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"errors": [{"msg": message or self._reason}]}))

    def reply(self, body: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class GalleryPage(PageHandler):
    def get(self) -> None:
        room = self.sees_room()
        scope = "the whole room" if room else f"clips by {self.who.name}"
        self.render(
            "gallery.html",
            title="Runway gallery",
            scope=scope,
            feed="gallery.json",
            xsrf=self.pages.login.xsrf(self),
            poll_ms=POLL_MS,
        )


class GalleryFeed(JsonPageHandler):
    """``GET /gallery.json[?since=CURSOR]``: the clips this visitor may see, newest first."""

    async def get(self) -> None:
        room = self.sees_room()
        since = parse_cursor(self.get_query_argument("since", None))
        feed = await self.run_db(
            self.pages.feed.clips, owner=None if room else self.who.id, since=since
        )
        feed["scope"] = "room" if room else "own"
        self.reply(feed)


class AdminPage(PageHandler):
    """``/admin``: the report as a table, with CSV and JSON downloads."""

    async def get(self) -> None:
        self.require_admin()
        rows = await self.run_db(self.pages.roster.report)
        self.render(
            "admin.html",
            title="Workshop report",
            rows=rows,
        )


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


class AssetHandler(StaticFileHandler):
    """The pages' stylesheet and script (never the templates)."""

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if Path(absolute_path).suffix not in (".css", ".js"):
            raise HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)


def page_routes(prefix: str, pages: PageContext) -> list[tuple[str, Any, dict[str, Any]]]:
    """The pages under ``prefix``, and whatever the login needs (the OAuth callback)."""
    args = {"pages": pages}
    return [
        (prefix + "/gallery", GalleryPage, args),
        (prefix + "/gallery.json", GalleryFeed, args),
        (prefix + "/admin", AdminPage, args),
        (prefix + r"/admin/report\.(json|csv)", AdminReport, args),
        (prefix + "/assets/(.*)", AssetHandler, {"path": str(ASSETS)}),
        *pages.login.routes(prefix),
    ]
