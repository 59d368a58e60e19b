"""A small preview of an image or video URL typed into the form.

Local URLs (the client's own backend) are read in the kernel and shown from bytes; remote
http(s) ones are shown by the browser from the URL. The player is built the first time it is
needed, on the kernel thread that runs the form's handlers, and joins the children only once
it has its bytes.
"""

from __future__ import annotations

import ipywidgets as widgets

from ...client.uploads import sniff_image
from ...models import is_http_url
from .. import html
from ..shared_models import SharedModels
from .source import IMAGE_LIMIT, VIDEO_LIMIT, MediaSource, MediaTooLarge, MediaUnavailable


def _image_format(data: bytes) -> str:
    content_type, _ = sniff_image(data)
    return content_type.split("/")[1] if content_type else "png"


class MediaPreview(widgets.Box):
    """A preview box; ``kind`` is ``image`` or ``video``."""

    children: tuple[widgets.Widget, ...]

    def __init__(self, media: MediaSource, kind: str, shared: SharedModels) -> None:
        self._media = media
        self._kind = kind
        self._shared = shared
        self._note: widgets.HTML | None = None
        self._player: widgets.Video | widgets.Image | None = None
        super().__init__(children=(), layout=shared.layout)
        self.add_class("rw-media")
        self.add_class("rw-preview")

    def show(self, url: str | None) -> None:
        """Preview ``url`` (empty: nothing)."""
        url = (url or "").strip()
        if not url:
            self._clear()
        elif not is_http_url(url):
            self._set_note(html.span("not an http(s) URL: no preview", "rw-muted"))
        elif self._media.is_local(url):
            self._show_local(url)
        elif self._kind == "video":
            self._set_note(html.video_tag(url, max_height="120px", muted=True))
        else:
            self._set_note(html.image_tag(url, max_height="120px"))

    def _show_local(self, url: str) -> None:
        limit = VIDEO_LIMIT if self._kind == "video" else IMAGE_LIMIT
        try:
            data = self._media.read_url(url, limit)
        except MediaTooLarge as exc:
            self._set_note(html.span(f"no preview: the file is {exc}", "rw-muted"))
            return
        except MediaUnavailable as exc:
            self._set_note(html.span(f"no preview: could not read it ({exc})", "rw-error"))
            return
        player = self._make_player()
        self.children = ()  # the player leaves the page before its bytes change
        if isinstance(player, widgets.Image):
            player.format = _image_format(data)
        player.value = data
        self.children = (player,)

    def _make_player(self) -> widgets.Video | widgets.Image:
        if self._player is None:
            if self._kind == "video":
                self._player = widgets.Video(format="mp4", controls=True, autoplay=False,
                                             loop=False, layout=self._shared.layout)
            else:
                self._player = widgets.Image(layout=self._shared.layout)
        return self._player

    def _set_note(self, value: str) -> None:
        if self._note is None:
            self._note = self._shared.html_widget()
        self._note.value = value
        self.children = (self._note,)
        if self._player is not None:
            self._player.value = b""

    def _clear(self) -> None:
        self.children = ()
        if self._player is not None:
            self._player.value = b""
        if self._note is not None:
            self._note.value = ""

    def close(self) -> None:
        for part in (self._player, self._note):
            if part is not None:
                part.close()
        super().close()
