"""A small preview of an image or video URL typed into the form.

Local URLs (the client's own backend) are read in the kernel and shown from bytes; remote
http(s) ones are shown by the browser from the URL. A local read runs in the media lane (it
may take up to the reader's deadline): the preview says "loading the preview…" at once, and
what the read finds comes back through `ui_updates`, only if that URL is still the one typed
(a newer one wins). The note and the player are built with the preview, on the kernel thread;
the player joins the children only once it has its bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets

from ...client.uploads import sniff_image
from ...models import is_http_url
from .. import html, ui_updates
from ..background import MEDIA, Lane
from ..shared_models import SharedModels
from .source import IMAGE_LIMIT, VIDEO_LIMIT, MediaSource, MediaTooLarge, MediaUnavailable

LOADING = "loading the preview…"


def _image_format(data: bytes) -> str:
    content_type, _ = sniff_image(data)
    return content_type.split("/")[1] if content_type else "png"


class MediaPreview(widgets.Box):
    """A preview box; ``kind`` is ``image`` or ``video``."""

    children: tuple[widgets.Widget, ...]

    def __init__(self, media: MediaSource, kind: str, shared: SharedModels, *,
                 lane: Lane = MEDIA) -> None:
        self._media = media
        self._kind = kind
        self._shared = shared
        self._lane = lane
        self._wanted: str | None = ""  # the URL shown or being read; None once closed
        self._note = shared.html_widget()
        self._player = self._make_player()
        super().__init__(children=(), layout=shared.layout)
        self.add_class("rw-media")
        self.add_class("rw-preview")

    def show(self, url: str | None) -> None:
        """Preview ``url`` (empty: nothing); a local one is read in the background."""
        url = (url or "").strip()
        ui_updates.apply(lambda: self._show(url))

    def _show(self, url: str) -> None:
        if self._wanted is None:
            return
        self._wanted = url
        if not url:
            self._clear()
        elif not is_http_url(url):
            self._set_note(html.span("not an http(s) URL: no preview", "rw-muted"))
        elif self._media.is_local(url):
            self._set_note(html.span(LOADING, "rw-muted"))
            self._lane.submit(("preview", id(self), url), self._read, url,
                              dropped=lambda: self._settle(url, self._show_busy))
        elif self._kind == "video":
            self._set_note(html.video_tag(url, max_height="120px", muted=True))
        else:
            self._set_note(html.image_tag(url, max_height="120px"))

    def _read(self, url: str) -> None:
        """In the media lane: read ``url`` and show what came, unless a newer URL was typed."""
        if url != self._wanted:
            return  # typed over while it waited: not worth reading
        limit = VIDEO_LIMIT if self._kind == "video" else IMAGE_LIMIT
        try:
            data = self._media.read_url(url, limit)
        except MediaTooLarge as exc:
            note = html.span(f"no preview: the file is {exc}", "rw-muted")
            self._settle(url, lambda: self._set_note(note))
        except MediaUnavailable as exc:
            note = html.span(f"no preview: could not read it ({exc})", "rw-error")
            self._settle(url, lambda: self._set_note(note))
        else:
            self._settle(url, lambda: self._show_bytes(data))

    def _settle(self, url: str, update: Callable[[], None]) -> None:
        """Apply what the read of ``url`` found, if ``url`` is still the one wanted."""

        def if_current() -> None:
            if url == self._wanted:
                update()

        ui_updates.apply(if_current)

    def _show_busy(self) -> None:
        self._set_note(html.span("no preview: the panel is busy; type the URL again",
                                 "rw-muted"))

    def _show_bytes(self, data: bytes) -> None:
        player = self._player
        self.children = ()  # the player leaves the page before its bytes change
        if isinstance(player, widgets.Image):
            player.format = _image_format(data)
        player.value = data
        self.children = (player,)

    def _make_player(self) -> widgets.Video | widgets.Image:
        if self._kind == "video":
            return widgets.Video(format="mp4", controls=True, autoplay=False, loop=False,
                                 layout=self._shared.layout)
        return widgets.Image(layout=self._shared.layout)

    def _set_note(self, value: str) -> None:
        self._note.value = value
        self.children = (self._note,)
        self._player.value = b""

    def _clear(self) -> None:
        self.children = ()
        self._player.value = b""
        self._note.value = ""

    def close(self) -> None:
        ui_updates.apply(self._forget)
        for part in (self._player, self._note):
            part.close()
        super().close()

    def _forget(self) -> None:
        self._wanted = None  # a read still running shows nothing
