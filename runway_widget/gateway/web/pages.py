"""The gateway's browser pages: ``/`` for anyone, the live ``/gallery``, and ``/admin``.

Pages identify their visitor through a `BrowserLogin` (hub OAuth, or a token once and then a
cookie). Admins see the whole room; a participant sees their own clips, or the room's when
the instructor's config says ``[gallery] room = true``. Until the first clip arrives, an
admin's gallery (the projector) shows how to join: the address, the open codes and a QR
code. Templates autoescape every value; the gallery's script renders the feed with
``textContent`` only; both show the queue in front of the upstream (its length, the
longest wait). The instructor's controls are in ``admin``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from ..db.queue import JobQueue
from ..db.roster import Participant, Roster
from .gallery import ClipFeed, parse_cursor
from .login import BrowserLogin

__all__ = ["ASSETS", "JsonPageHandler", "PageContext", "PageHandler", "public_routes"]

ASSETS = Path(__file__).with_name("templates")
POLL_MS = 1500
SHOWN_CODES = 3  # open join codes the projector shows at most
QR_SCALE = 8


@dataclass
class PageContext:
    """What the pages need, built once by the application."""

    login: BrowserLogin
    feed: ClipFeed
    roster: Roster
    executor: Executor | None
    room_gallery: bool = False
    # the address participants use (with --host 0.0.0.0: a network address, not 127.0.0.1)
    join_url: Callable[[], str] = field(default=lambda: "")
    queue: JobQueue | None = None  # the jobs waiting for the upstream

    def queue_status(self) -> dict[str, Any] | None:
        """The queue's length, longest wait, limit (None without a queue)."""
        return self.queue.status() if self.queue is not None else None


class TemplatePage(RequestHandler):
    """A page from ``templates/``, never cached, with ``assets`` and ``prefix`` at hand."""

    def initialize(self, pages: PageContext) -> None:
        self.pages = pages

    def get_template_path(self) -> str:
        return str(ASSETS)

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        prefix = self.settings.get("gateway_prefix", "")
        namespace.update(prefix=prefix, assets=prefix + "/assets/")
        return namespace

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")


class PageHandler(TemplatePage):
    """Identifies the visitor before any method runs; an unknown one is sent to sign in.

    A form's POST must carry the page's XSRF token (tornado's, or the hub's on JupyterHub),
    unless the request authenticates with an ``Authorization`` header, which no other site
    can make a browser send.
    """

    participant: Participant | None = None
    place = "this page"  # what the sign-in page offers to sign in to

    async def prepare(self) -> None:
        self.participant = await self.pages.login.identify(self)
        if self.participant is None:
            self.refuse()
            return
        if self.request.method not in ("GET", "HEAD") and not self.request.headers.get(
            "Authorization"
        ):
            self.check_xsrf_cookie()
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


class HomePage(TemplatePage):
    """``/``: what this is and how to join, for anyone who opens the address (no sign-in).

    ``?code=…`` (the projector's QR code) fills the code into the join command.
    """

    def get(self) -> None:
        code = self.get_query_argument("code", "")
        code = code.strip()[:64] if code.strip().isprintable() else ""
        self.render(
            "home.html", title="Runway video workshop", url=self._url(), code=code or "CODE"
        )

    def _url(self) -> str:
        return self.pages.join_url() or (
            f"{self.request.protocol}://{self.request.host}"
            + self.settings.get("gateway_prefix", "")
        )


class GalleryPage(PageHandler):
    place = "the gallery"

    async def get(self) -> None:
        room = self.sees_room()
        scope = "the whole room" if room else f"clips by {self.who.name}"
        joins = await self.run_db(self._joins) if self.who.admin else []
        self.render(
            "gallery.html",
            title="Runway gallery",
            scope=scope,
            feed="gallery.json",
            xsrf=self.pages.login.xsrf(self),
            poll_ms=POLL_MS,
            joins=joins,
            join_url=self.pages.join_url(),
        )

    def _joins(self) -> list[dict[str, str]]:
        """The open room codes with seats left, each with its join command and a QR code."""
        url = self.pages.join_url()
        shown = [
            code
            for code in self.pages.roster.codes.listing()
            if code["code"]
            and not (code["personal"] or code["closed"])
            and code["seats_used"] < code["seats"]
        ][:SHOWN_CODES]
        return [
            {
                "code": code["code"],
                "command": f"runway-widget join {url} {code['code']}",
                "qr": _qr(f"{url}/?{urlencode({'code': code['code']})}"),
            }
            for code in shown
        ]


class GalleryFeed(JsonPageHandler):
    """``GET /gallery.json[?since=CURSOR]``: the clips this visitor may see, newest first."""

    async def get(self) -> None:
        room = self.sees_room()
        since = parse_cursor(self.get_query_argument("since", None))
        feed = await self.run_db(
            self.pages.feed.clips, owner=None if room else self.who.id, since=since
        )
        feed["scope"] = "room" if room else "own"
        status = await self.run_db(self.pages.queue_status)
        if status is not None:
            feed["queue"] = {key: status[key] for key in ("queued", "oldest_wait")}
        self.reply(feed)


class AssetHandler(StaticFileHandler):
    """The pages' stylesheet and script (never the templates)."""

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if Path(absolute_path).suffix not in (".css", ".js"):
            raise HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)


def public_routes(prefix: str, args: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    """The pages anyone signed in may open, and their assets."""
    return [
        (prefix + "/?", HomePage, args),
        (prefix + "/gallery", GalleryPage, args),
        (prefix + "/gallery.json", GalleryFeed, args),
        (prefix + "/assets/(.*)", AssetHandler, {"path": str(ASSETS)}),
    ]


def _qr(text: str) -> str:
    """``text`` as a QR code, an SVG ``data:`` URI for an ``<img>``; "" without segno."""
    try:
        import segno
    except ImportError:  # pragma: no cover - segno comes with the gateway extra
        return ""
    return str(segno.make(text, error="m").svg_data_uri(scale=QR_SCALE, border=2))
