"""The generation form: what to make, with only the fields that apply, and problems in place.

The form knows nothing about jobs. It builds a `GenerationRequest` from what the user set
(`request`), shows problems next to their fields (`show_problems`), and calls back when
Generate is clicked. The webhook secret is taken out of its ``Password`` field as soon as it
arrives, kept in a private attribute and used once: a synced trait never holds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import ApiframeError
from ..models import ASPECT_RATIOS, DURATIONS, MODELS, GenerationRequest, Problem, is_http_url
from ..uploads import sniff_image
from . import html
from .lifecycle import close_tree
from .media import IMAGE_LIMIT, VIDEO_LIMIT, MediaSource, MediaTooLarge, MediaUnavailable

if TYPE_CHECKING:
    from ..webhooks import WebhookReceiver

log = logging.getLogger("runway_widget.widget")

TYPE_LABELS = (
    ("Text → video", "text2video"),
    ("Image → video", "image2video"),
    ("Video → video", "video2video"),
)
# Which rows each generation type shows; the rest are hidden (layout.display = "none").
TYPE_FIELDS = {
    "text2video": ("aspect_ratio",),
    "image2video": ("image_url", "end_image_url"),
    "video2video": ("video_url",),
}
LABEL_WIDTH = "110px"
_DESC = {"description_width": LABEL_WIDTH}


def _image_format(data: bytes) -> str:
    content_type, _ = sniff_image(data)
    return content_type.split("/")[1] if content_type else "png"


def _label(text: str, width: str = LABEL_WIDTH) -> widgets.HTML:
    """A field label lined up with the ``description`` labels of the other fields."""
    return widgets.HTML(
        f'<div style="text-align: right; padding-right: 8px">{html.esc(text)}</div>',
        layout=widgets.Layout(width=width, min_width=width if width != "auto" else None),
    )


class MediaPreview(widgets.Box):
    """A small preview of an image or video URL, with pre-built players.

    Local URLs are read in the kernel and shown from bytes; remote http(s) ones are shown by
    the browser from the URL. A player joins the children only once it has its bytes.
    """

    def __init__(self, media: MediaSource, kind: str, max_height: str = "120px") -> None:
        self._media = media
        self._kind = kind
        self._max_height = max_height
        self._note = widgets.HTML()
        size = widgets.Layout(max_height=max_height, max_width="240px", width="auto")
        if kind == "video":
            self._player: widgets.Video | widgets.Image = widgets.Video(
                format="mp4", controls=True, autoplay=False, loop=False, layout=size
            )
        else:
            self._player = widgets.Image(layout=size)
        super().__init__(children=(), layout=widgets.Layout(margin=f"0 0 4px {LABEL_WIDTH}"))
        self.add_class("rw-media")

    def show(self, url: str | None) -> None:
        """Preview ``url`` (empty: nothing)."""
        url = (url or "").strip()
        if not url:
            self._clear()
            return
        if not is_http_url(url):
            self._set_note(html.span("not an http(s) URL: no preview", "rw-muted"))
            return
        if self._media.is_local(url):
            limit = VIDEO_LIMIT if self._kind == "video" else IMAGE_LIMIT
            try:
                data = self._media.read_url(url, limit)
            except MediaTooLarge as exc:
                self._set_note(html.span(f"no preview: the file is {exc}", "rw-muted"))
                return
            except MediaUnavailable as exc:
                self._set_note(html.span(f"no preview: could not read it ({exc})", "rw-error"))
                return
            self.children = ()
            if isinstance(self._player, widgets.Image):
                self._player.format = _image_format(data)
            self._player.value = data
            self.children = (self._player,)
            return
        if self._kind == "video":
            self._set_note(html.video_tag(url, max_height=self._max_height, muted=True))
        else:
            self._set_note(html.image_tag(url, max_height=self._max_height))

    def close(self) -> None:
        close_tree(self, (self._player, self._note))
        super().close()

    def _set_note(self, value: str) -> None:
        self._note.value = value
        self.children = (self._note,)
        self._player.value = b""

    def _clear(self) -> None:
        self.children = ()
        self._player.value = b""
        self._note.value = ""


class GenerationForm(widgets.VBox):
    """Prompt, generation type and options; Generate calls the ``on_submit`` callback."""

    def __init__(
        self,
        *,
        media: MediaSource | None = None,
        upload: Callable[[bytes], str] | None = None,
        webhooks: WebhookReceiver | None = None,
    ) -> None:
        self._media = media or MediaSource()
        self._upload = upload
        self._webhooks = webhooks
        self._submit_callbacks: list[Callable[[], Any]] = []
        self._secret: str | None = None
        self._problems: list[Problem] = []
        self._errors: dict[str, widgets.HTML] = {}
        self._rows: dict[str, widgets.Box] = {}

        full = widgets.Layout(width="100%")
        self.prompt = widgets.Textarea(
            description="Prompt",
            placeholder="Describe the video: subject, motion, camera, light…",
            rows=3,
            style=_DESC,
            layout=full,
        )
        self._count = widgets.HTML(html.span("0 characters", "rw-muted"))
        self.generation_type = widgets.ToggleButtons(
            options=TYPE_LABELS, value="text2video", style={"button_width": "auto"}
        )
        self.image_url = self._url_field("Image URL", "https://… first frame (required)")
        self.end_image_url = self._url_field("End image", "https://… last frame (optional)")
        self.video_url = self._url_field("Video URL", "https://… video to restyle (required)")
        self.image_upload = self._upload_button()
        self.end_image_upload = self._upload_button()
        self._image_preview = MediaPreview(self._media, "image")
        self._end_image_preview = MediaPreview(self._media, "image")
        self._video_preview = MediaPreview(self._media, "video")
        self.aspect_ratio = widgets.Dropdown(
            options=ASPECT_RATIOS, value="16:9", description="Aspect ratio", style=_DESC
        )
        self.model = widgets.Dropdown(
            options=MODELS, value="gen3a_turbo", description="Model", style=_DESC
        )
        self.duration = widgets.ToggleButtons(
            options=[(f"{d} s", d) for d in DURATIONS],
            value=DURATIONS[0],
            style={"button_width": "56px"},
        )
        self.flip = widgets.Checkbox(
            value=False, description="Flip vertically", indent=False,
            layout=widgets.Layout(width="auto"),
        )
        self.webhook_url = self._url_field("Webhook URL", "https://… receives status updates")
        self.webhook_secret = widgets.Password(
            description="Webhook secret",
            placeholder="sent back as x-webhook-secret",
            continuous_update=False,
            style=_DESC,
            layout=widgets.Layout(width="60%"),
        )
        self._secret_note = widgets.HTML()
        self._receive_here = widgets.Button(
            description="Receive updates here",
            icon="download",
            tooltip="Point the webhook at this kernel's receiver (its secret is used for you)",
            layout=widgets.Layout(width="auto", margin=f"2px 0 2px {LABEL_WIDTH}"),
        )
        self.generate = widgets.Button(
            description="Generate", button_style="primary", icon="play",
            layout=widgets.Layout(width="140px"),
        )
        self._status = widgets.HTML()
        self._summary = widgets.HTML(layout=widgets.Layout(display="none"))

        self._wire()
        super().__init__(children=self._layout(), layout=widgets.Layout(width="100%"))
        self._show_type_fields()

    # ----- building -------------------------------------------------------------------------

    @staticmethod
    def _url_field(label: str, placeholder: str) -> widgets.Text:
        return widgets.Text(
            description=label,
            placeholder=placeholder,
            continuous_update=False,
            style=_DESC,
            layout=widgets.Layout(flex="1 1 auto", width="auto"),
        )

    def _upload_button(self) -> widgets.FileUpload:
        return widgets.FileUpload(
            accept="image/*",
            multiple=False,
            description="Upload",
            tooltip="Upload a local image (max 2 MB); its URL fills the field",
            layout=widgets.Layout(width="auto", display="flex" if self._upload else "none"),
        )

    def _error(self, name: str) -> widgets.HTML:
        box = widgets.HTML(layout=widgets.Layout(display="none", margin=f"0 0 0 {LABEL_WIDTH}"))
        self._errors[name] = box
        return box

    def _row(self, name: str, *children: widgets.Widget) -> widgets.VBox:
        row = widgets.VBox(
            [*children, self._error(name)], layout=widgets.Layout(width="100%", margin="0")
        )
        self._rows[name] = row
        return row

    def _layout(self) -> list[widgets.Widget]:
        wide = widgets.Layout(width="100%", align_items="center")
        prompt = self._row(
            "prompt",
            self.prompt,
            widgets.HBox([self._count], layout=widgets.Layout(justify_content="flex-end")),
        )
        image = self._row(
            "image_url", widgets.HBox([self.image_url, self.image_upload], layout=wide),
            self._image_preview,
        )
        end_image = self._row(
            "end_image_url",
            widgets.HBox([self.end_image_url, self.end_image_upload], layout=wide),
            self._end_image_preview,
        )
        video = self._row("video_url", self.video_url, self._video_preview)
        self.model.layout.width = "260px"
        options = widgets.HBox(
            [self.model, _label("Duration", "auto"), self.duration, self.flip],
            layout=widgets.Layout(width="100%", align_items="center", flex_flow="row wrap",
                                  grid_gap="8px"),
        )
        self._receive_here.layout.display = "flex" if self._webhooks is not None else "none"
        advanced = widgets.VBox(
            [
                self._row("webhook_url", self.webhook_url),
                self._receive_here,
                self._row("webhook_secret", self.webhook_secret, self._secret_note),
            ],
            layout=widgets.Layout(width="100%"),
        )
        self._advanced = widgets.Accordion(children=[advanced], selected_index=None)
        self._advanced.set_title(0, "Advanced: webhook")
        self._advanced.layout.width = "100%"
        actions = widgets.HBox(
            [self.generate, self._status],
            layout=widgets.Layout(align_items="center", grid_gap="12px", margin="6px 0 0 0"),
        )
        return [
            prompt,
            self._row("generation_type", widgets.HBox([_label("Type"), self.generation_type])),
            image,
            end_image,
            video,
            self._row("aspect_ratio", self.aspect_ratio),
            self._row("model", options),
            self._advanced,
            self._summary,
            actions,
        ]

    def _wire(self) -> None:
        self.prompt.observe(self._on_prompt, names="value")
        self.generation_type.observe(lambda _: self._show_type_fields(), names="value")
        self.image_url.observe(
            lambda c: self._on_url(c, "image_url", self._image_preview), names="value"
        )
        self.end_image_url.observe(
            lambda c: self._on_url(c, "end_image_url", self._end_image_preview), names="value"
        )
        self.video_url.observe(
            lambda c: self._on_url(c, "video_url", self._video_preview), names="value"
        )
        self.webhook_url.observe(lambda _: self._clear_problem("webhook_url"), names="value")
        self.webhook_secret.observe(self._on_secret, names="value")
        self.image_upload.observe(
            lambda c: self._on_upload(c, self.image_upload, self.image_url, "image_url"),
            names="value",
        )
        self.end_image_upload.observe(
            lambda c: self._on_upload(c, self.end_image_upload, self.end_image_url,
                                      "end_image_url"),
            names="value",
        )
        self._receive_here.on_click(self._on_receive_here)
        self.generate.on_click(lambda _: self._fire_submit())

    # ----- reactions ------------------------------------------------------------------------

    def _on_prompt(self, change: dict[str, Any]) -> None:
        n = len(change["new"] or "")
        self._count.value = html.span(f"{n} character{'s' if n != 1 else ''}", "rw-muted")
        self._clear_problem("prompt")

    def _show_type_fields(self) -> None:
        shown = TYPE_FIELDS[self.generation_type.value]
        for fields in TYPE_FIELDS.values():
            for name in fields:
                self._rows[name].layout.display = "flex" if name in shown else "none"
        if self._problems:  # they were about the previous type's fields
            self.clear_problems()

    def _on_url(self, change: dict[str, Any], name: str, preview: MediaPreview) -> None:
        self._clear_problem(name)
        preview.show(change["new"])

    def _on_secret(self, change: dict[str, Any]) -> None:
        """Move a typed secret out of the synced field at once; show it masked."""
        if not change["new"]:
            return
        from ..client import mask_secret

        self._secret = change["new"]
        self.webhook_secret.value = ""
        self._secret_note.value = html.span(
            f"secret set ({mask_secret(self._secret)}), used by the next job", "rw-muted"
        )
        self._clear_problem("webhook_secret")

    def _on_upload(
        self, change: dict[str, Any], button: widgets.FileUpload, target: widgets.Text, name: str
    ) -> None:
        files = change["new"]
        if not files:
            return
        first = files[0]
        content = first.get("content", b"")
        data = content.tobytes() if isinstance(content, memoryview) else bytes(content)
        button.value = ()  # the file's bytes must not stay in the widget state
        if self._upload is None:
            return
        self._set_field_error(name, f"uploading {first.get('name') or 'image'}…", muted=True)
        try:
            url = self._upload(data)
        except ApiframeError as exc:
            self._set_field_error(name, f"upload failed: {exc}")
            return
        except Exception as exc:  # a failed upload must never raise into the frontend
            log.warning("image upload failed: %s", type(exc).__name__)
            self._set_field_error(name, f"upload failed: {type(exc).__name__}")
            return
        self._set_field_error(name, None)
        target.value = url

    def _on_receive_here(self, _button: widgets.Button) -> None:
        if self._webhooks is None:
            return
        self.webhook_url.value = self._webhooks.url
        self._secret_note.value = html.span(
            "using this kernel's receiver and its own secret", "rw-muted"
        )

    def _fire_submit(self) -> None:
        for callback in self._submit_callbacks:
            callback()

    # ----- public ---------------------------------------------------------------------------

    def on_submit(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when Generate is clicked."""
        self._submit_callbacks.append(callback)

    def request(self) -> GenerationRequest:
        """The request the form describes, with only the fields of the chosen type.

        It carries the typed webhook secret (until `forget_secret`); with this kernel's
        receiver as webhook URL, the receiver's secret instead, never passing through a trait.
        """
        kind = self.generation_type.value
        webhook_url = self.webhook_url.value.strip() or None
        secret = self._secret
        if self._webhooks is not None and webhook_url and webhook_url == self._webhooks.url:
            secret = self._webhooks.secret

        def text(widget: widgets.Text) -> str | None:
            return widget.value.strip() or None

        return GenerationRequest(
            prompt=self.prompt.value.strip(),
            generation_type=kind,
            image_url=text(self.image_url) if kind == "image2video" else None,
            end_image_url=text(self.end_image_url) if kind == "image2video" else None,
            video_url=text(self.video_url) if kind == "video2video" else None,
            aspect_ratio=self.aspect_ratio.value if kind == "text2video" else None,
            model=self.model.value,
            duration=self.duration.value,
            flip=True if self.flip.value else None,
            webhook_url=webhook_url,
            webhook_secret=secret,
        )

    def forget_secret(self) -> None:
        """Drop the typed webhook secret (after a job was sent with it)."""
        self._secret = None
        self._secret_note.value = ""

    def show_problems(self, problems: Sequence[Problem | str]) -> None:
        """Show every problem at once: under its field when it has one, and in a list."""
        self._problems = [
            p if isinstance(p, Problem) else Problem(None, str(p)) for p in problems
        ]
        for name in self._errors:
            self._set_field_error(name, None)
        for problem in self._problems:
            if problem.field in self._errors:
                self._set_field_error(problem.field, problem.message)
        if any(p.field in ("webhook_url", "webhook_secret") for p in self._problems):
            self._advanced.selected_index = 0
        self._render_summary()

    def clear_problems(self) -> None:
        self.show_problems([])

    @property
    def problems(self) -> list[str]:
        """The problems shown now."""
        return [p.message for p in self._problems]

    def set_busy(self, busy: bool) -> None:
        """Disable Generate while a submit is in flight."""
        self.generate.disabled = busy
        self.generate.description = "Submitting…" if busy else "Generate"
        self._status.value = html.span("sending the request…", "rw-muted") if busy else ""

    def use_video(self, url: str) -> None:
        """Make ``url`` the input of a video2video job."""
        self.generation_type.value = "video2video"
        self.video_url.value = url

    # ----- problems -------------------------------------------------------------------------

    def _set_field_error(self, name: str, message: str | None, *, muted: bool = False) -> None:
        box = self._errors.get(name)
        if box is None:
            return
        if message:
            box.value = html.span(message, "rw-muted" if muted else "rw-error")
            box.layout.display = "block"
        else:
            box.value = ""
            box.layout.display = "none"

    def _clear_problem(self, name: str) -> None:
        if not any(p.field == name for p in self._problems):
            return
        self._problems = [p for p in self._problems if p.field != name]
        self._set_field_error(name, None)
        self._render_summary()

    def _render_summary(self) -> None:
        if not self._problems:
            self._summary.value = ""
            self._summary.layout.display = "none"
            return
        n = len(self._problems)
        title = "fix this first" if n == 1 else f"fix these {n} problems"
        title = f"Nothing was sent: {title}"
        body = html.bullet_list([p.message for p in self._problems])
        self._summary.value = f'<div class="rw-problems"><b>{html.esc(title)}</b>{body}</div>'
        self._summary.layout.display = "block"
