"""Getting a video or image to the browser, wherever the browser is.

A remote http(s) URL is handed to the browser as is (``<video src=…>``). A *local* URL — one on
the client's own loopback backend (`ApiframeClient.is_own_backend`: the demo server, a gateway
on this machine) — may not be reachable from the browser (Binder, JupyterHub): the kernel reads
those bytes and sends them through an ``ipywidgets.Video``/``Image``. No other URL is ever read
by the kernel: a loopback or private address in a server's reply could carry internal data into
a saved notebook. The Jupyter server's websocket caps one message near
10 MB, so bigger files are never sent that way: the caller says where the file is instead.

For the kernel's own use (a poster frame for a saved notebook) it may also read any URL of
the client's own backend, wherever that is (a workshop gateway on the room's network): the
backend the user chose, never an address a reply named elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeGuard

from ..._http.deadlines import DeadlinePassed
from ..._http.session import ReplyTooLarge, Session
from ..._http.transport import Transport, TransportError
from ...models import is_http_url

VIDEO_LIMIT = 8 * 1024 * 1024
IMAGE_LIMIT = 4 * 1024 * 1024


class MediaTooLarge(Exception):
    """The file is bigger than what may go through the widget channel."""

    def __init__(self, size: int | None, limit: int) -> None:
        what = f"{size / 1e6:.1f} MB" if size is not None else "too large"
        super().__init__(f"{what}, above the {limit / 1e6:.0f} MB a notebook message can carry")
        self.size = size
        self.limit = limit


class MediaUnavailable(Exception):
    """The bytes could not be read (server gone, 404, not a local URL)."""


class MediaSource:
    """Decides local vs remote and reads local bytes with a size cap and a deadline.

    Reads go through their own bounded session (no Authorization header, so a local URL
    typed by the user never receives the API key; redirects are not followed; the whole read
    must end within ``deadline`` seconds, however slowly the server trickles), over the
    client's ``transport`` when given (the backend it reads from is the client's own).
    """

    def __init__(
        self, is_own_backend: Callable[[str], bool] | None = None, timeout: float = 15.0,
        deadline: float = 60.0, *, is_backend: Callable[[str], bool] | None = None,
        transport: Transport | None = None,
    ) -> None:
        self._is_own_backend = is_own_backend
        self._is_backend = is_backend
        self._deadline = deadline
        self._owns_transport = transport is None
        self._session = Session(transport, user_agent="runway-widget-media", timeout=timeout)

    def is_local(self, url: str | None) -> TypeGuard[str]:
        """True for an http(s) URL on the client's own loopback backend (and nothing else)."""
        if url is None or self._is_own_backend is None or not is_http_url(url):
            return False
        return self._is_own_backend(url)

    def read_url(self, url: str, limit: int) -> bytes:
        """The bytes behind a local URL, at most ``limit`` of them, or an exception saying why."""
        if not self.is_local(url):
            raise MediaUnavailable("not a local URL")
        return self._read(url, limit)

    def read_backend_url(self, url: str, limit: int) -> bytes:
        """The bytes behind any URL of the client's own backend, for the kernel's own use."""
        if self._is_backend is None or not is_http_url(url) or not self._is_backend(url):
            raise MediaUnavailable("not a URL of the client's backend")
        return self._read(url, limit)

    def _read(self, url: str, limit: int) -> bytes:
        try:
            reply = self._session.call("GET", url, policy="once", deadline=self._deadline,
                                       limit=limit)
        except ReplyTooLarge as exc:
            raise MediaTooLarge(exc.size, limit) from None
        except DeadlinePassed:
            raise MediaUnavailable(f"no complete answer within {self._deadline:g} s") from None
        except TransportError as exc:
            raise MediaUnavailable(type(exc).__name__) from None
        if reply.status != 200:
            raise MediaUnavailable(f"HTTP {reply.status}")
        if not reply.body:
            raise MediaUnavailable("an empty reply")
        return reply.body

    @staticmethod
    def read_file(path: str | os.PathLike[str], limit: int) -> bytes:
        """The bytes of a local file, refusing files above ``limit``."""
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise MediaUnavailable(exc.strerror or "cannot read the file") from None
        if size > limit:
            raise MediaTooLarge(size, limit)
        return path.read_bytes()

    def close(self) -> None:
        if self._owns_transport:
            self._session.close()
