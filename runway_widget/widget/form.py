"""The generation form: what to make, with only the fields that apply, and problems in place.

The form knows nothing about jobs. It builds a `GenerationRequest` from what the user set
(`request`), shows problems next to their fields (`show_problems`), and calls back when
Generate is clicked. The webhook secret is taken out of its ``Password`` field as soon as it
arrives, kept in a private attribute and used once: no synced trait ever holds it, nor any
part of it (the form only says that a secret is set).

Every widget of the form shares the panel's layout and style models (`SharedModels`); sizes
and visibility are CSS classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..models import ASPECT_RATIOS, DURATIONS, MODELS, GenerationRequest, Problem
from . import html, ui_updates
from .background import MEDIA, Lane
from .image_upload import FieldUploads, upload_button
from .lifecycle import close_tree
from .media.preview import MediaPreview
from .media.source import MediaSource
from .problems import FieldProblems
from .shared_models import SharedModels, set_shown

if TYPE_CHECKING:
    from ..tracking.webhooks import WebhookReceiver

TYPE_LABELS = (
    ("Text → video", "text2video"),
    ("Image → video", "image2video"),
    ("Video → video", "video2video"),
)
# Which rows each generation type shows; the rest are hidden.
TYPE_FIELDS = {
    "text2video": ("aspect_ratio",),
    "image2video": ("image_url", "end_image_url"),
    "video2video": ("video_url",),
}
# The fields whose problems are shown right under them (all problems are also listed).
FIELDS_WITH_ERRORS = ("prompt", "image_url", "end_image_url", "video_url", "webhook_url",
                      "webhook_secret")
SECRET_SET = "a webhook secret is set; the next job sends it (it is not kept or shown)"


class GenerationForm(widgets.VBox):
    """Prompt, generation type and options; Generate calls the ``on_submit`` callbacks.

    ``upload`` sends an image and returns its URL, in ``upload_lane`` (a panel gives its
    backend's account lane), never on the kernel thread.
    """

    def __init__(
        self,
        *,
        media: MediaSource | None = None,
        upload: Callable[[bytes], str] | None = None,
        upload_lane: Lane = MEDIA,
        webhooks: WebhookReceiver | None = None,
        shared: SharedModels | None = None,
    ) -> None:
        self._media = media or MediaSource()
        self._upload = upload
        self._upload_lane = upload_lane
        self._webhooks = webhooks
        self._own_shared = shared is None
        self._shared = s = shared or SharedModels()
        self._submit_callbacks: list[Callable[[], Any]] = []
        self._secret: str | None = None
        self._busy = False
        self._blocked: str | None = None  # why Generate cannot be used now (a quota used up)
        self._problem_lines = FieldProblems(FIELDS_WITH_ERRORS, s)
        self._errors = self._problem_lines.lines
        self._summary = self._problem_lines.summary

        self.prompt = widgets.Textarea(
            description="Prompt", placeholder="Describe the video: subject, motion, camera, "
            "light…", rows=3, layout=s.layout, style=s.labelled)
        self.prompt.add_class("rw-wide")
        self._count = s.html_widget(html.span("0 characters", "rw-muted"), "rw-count")
        self.generation_type = widgets.ToggleButtons(
            options=TYPE_LABELS, value="text2video", description="Type",
            layout=s.layout, style=s.toggles)
        self.image_url = self._url_field("Image URL", "https://… first frame (required)")
        self.end_image_url = self._url_field("End image", "https://… last frame (optional)")
        self.video_url = self._url_field("Video URL", "https://… video to restyle (required)")
        self.image_upload = upload_button(s, upload is not None)
        self.end_image_upload = upload_button(s, upload is not None)
        self._image_preview = MediaPreview(self._media, "image", s)
        self._end_image_preview = MediaPreview(self._media, "image", s)
        self._video_preview = MediaPreview(self._media, "video", s)
        self.aspect_ratio = widgets.Dropdown(options=ASPECT_RATIOS, value="16:9",
                                             description="Aspect ratio", layout=s.layout,
                                             style=s.labelled)
        self.model = widgets.Dropdown(options=MODELS, value="gen3a_turbo", description="Model",
                                      layout=s.layout, style=s.labelled)
        self.duration = widgets.ToggleButtons(
            options=[(f"{d} s", d) for d in DURATIONS], value=DURATIONS[0],
            description="Duration", layout=s.layout, style=s.toggles)
        self.flip = widgets.Checkbox(value=False, description="Flip vertically", indent=False,
                                     layout=s.layout, style=s.checkbox)
        self.webhook_url = self._url_field("Webhook URL", "https://… receives status updates")
        self.webhook_secret = widgets.Password(
            description="Webhook secret", placeholder="sent back as x-webhook-secret",
            continuous_update=False, layout=s.layout, style=s.labelled)
        self._secret_note = s.html_widget("", "rw-field-note")
        self._receive_here = s.button_widget(
            "Receive updates here", "rw-field-note", icon="download",
            tooltip="Point the webhook at this kernel's receiver (its secret is used for you)")
        set_shown(self._receive_here, webhooks is not None)
        self.generate = s.button_widget("Generate", "rw-generate", button_style="primary",
                                        icon="play")
        self._status = s.html_widget("", "rw-status")
        self._rows: dict[str, widgets.Widget] = {}
        self._wire()
        super().__init__(children=self._layout(), layout=s.layout)
        self.add_class("rw-form")
        self._show_type_fields()

    # ----- building -------------------------------------------------------------------------

    def _url_field(self, label: str, placeholder: str) -> widgets.Text:
        field = widgets.Text(description=label, placeholder=placeholder,
                             continuous_update=False, layout=self._shared.layout,
                             style=self._shared.labelled)
        field.add_class("rw-grow")
        return field

    def _row(self, name: str, *children: widgets.Widget) -> widgets.Box:
        row = self._shared.box([*children], "rw-row")
        self._rows[name] = row
        return row

    def _layout(self) -> list[widgets.Widget]:
        s, errors = self._shared, self._errors
        self._rows["aspect_ratio"] = self.aspect_ratio
        options = s.box([self.model, self.duration, self.flip], "rw-row")
        advanced = s.box(
            [self.webhook_url, errors["webhook_url"], self._receive_here, self.webhook_secret,
             self._secret_note, errors["webhook_secret"]],
            "rw-row", kind=widgets.VBox)
        self._advanced = widgets.Accordion(children=[advanced], selected_index=None,
                                           layout=s.layout)
        self._advanced.set_title(0, "Advanced: webhook")
        actions = s.box([self.generate, self._status], "rw-row", "rw-actions")
        return [
            self.prompt, self._count, errors["prompt"], self.generation_type,
            self._row("image_url", self.image_url, self.image_upload, errors["image_url"],
                      self._image_preview),
            self._row("end_image_url", self.end_image_url, self.end_image_upload,
                      errors["end_image_url"], self._end_image_preview),
            self._row("video_url", self.video_url, errors["video_url"], self._video_preview),
            self.aspect_ratio, options, self._advanced, self._summary, actions,
        ]

    def _wire(self) -> None:
        self.prompt.observe(self._on_prompt, names="value")
        self.generation_type.observe(lambda _: self._show_type_fields(), names="value")
        for name, preview in (("image_url", self._image_preview),
                              ("end_image_url", self._end_image_preview),
                              ("video_url", self._video_preview)):
            field = getattr(self, name)
            field.observe(lambda c, n=name, p=preview: self._on_url(c, n, p), names="value")
        self.webhook_url.observe(lambda _: self._problem_lines.clear("webhook_url"), names="value")
        self.webhook_secret.observe(self._on_secret, names="value")
        for button, target, name in ((self.image_upload, self.image_url, "image_url"),
                                     (self.end_image_upload, self.end_image_url,
                                      "end_image_url")):
            FieldUploads(button, target, name, self._upload, self._problem_lines,
                         self._upload_lane)
        self._receive_here.on_click(self._on_receive_here)
        self.generate.on_click(lambda _: self._fire_submit())

    # ----- reactions ------------------------------------------------------------------------

    def _on_prompt(self, change: dict[str, Any]) -> None:
        n = len(change["new"] or "")
        self._count.value = html.span(f"{n} character{'s' if n != 1 else ''}", "rw-muted")
        self._problem_lines.clear("prompt")

    def _show_type_fields(self) -> None:
        shown = TYPE_FIELDS[self.generation_type.value]
        for fields in TYPE_FIELDS.values():
            for name in fields:
                set_shown(self._rows[name], name in shown)
        if self._problem_lines:  # they were about the previous type's fields
            self.clear_problems()

    def _on_url(self, change: dict[str, Any], name: str, preview: MediaPreview) -> None:
        self._problem_lines.clear(name)
        preview.show(change["new"])

    def _on_secret(self, change: dict[str, Any]) -> None:
        """Move a typed secret out of the synced field at once; say only that one is set."""
        if not change["new"]:
            return
        self._secret = change["new"]
        self.webhook_secret.value = ""
        self._secret_note.value = html.span(SECRET_SET, "rw-muted")
        self._problem_lines.clear("webhook_secret")

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
        self._problem_lines.show(problems)
        if self._problem_lines.concern("webhook_url", "webhook_secret"):
            self._advanced.selected_index = 0

    def clear_problems(self) -> None:
        self.show_problems([])

    @property
    def problems(self) -> list[str]:
        """The problems shown now."""
        return self._problem_lines.messages

    def set_busy(self, busy: bool) -> None:
        """Disable Generate while a submit is in flight, and say so."""
        self._busy = busy
        self._show_generate()

    def block(self, reason: str | None) -> None:
        """Disable Generate for ``reason``, said next to it (None: enable it again)."""
        self._blocked = reason
        self._show_generate()

    @property
    def blocked(self) -> str | None:
        """Why Generate is disabled (other than a submit in flight), or None."""
        return self._blocked

    def _show_generate(self) -> None:
        busy, blocked = self._busy, self._blocked
        if busy:
            status = html.span("sending the request…", "rw-muted")
        else:
            status = html.span(blocked, "rw-warn-text") if blocked else ""
        ui_updates.set_values(self.generate, disabled=busy or bool(blocked),
                              description="Sending…" if busy else "Generate",
                              icon="spinner" if busy else "play")
        ui_updates.set_values(self._status, value=status)

    def say_ignored(self, why: str) -> None:
        """Say next to Generate that a click did nothing, and why."""
        ui_updates.set_values(
            self._status, value=html.span(f"Click ignored: {why}.", "rw-warn-text"))

    def use_video(self, url: str) -> None:
        """Make ``url`` the input of a video2video job."""
        self.generation_type.value = "video2video"
        self.video_url.value = url

    def close(self) -> None:
        """Close the form, its fields and the models they share."""
        close_tree(self)
        super().close()
        if self._own_shared:
            self._shared.close()
