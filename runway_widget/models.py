"""What is sent (`GenerationRequest`) and what comes back (`Task`)."""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from ._secrets import key_problem
from .errors import ApiframeError, Problem, ValidationError, shorten

GENERATION_TYPES = ("text2video", "image2video", "video2video")
ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
MODELS = ("gen3", "gen3a_turbo")
DURATIONS = (5, 10)
TERMINAL_STATUSES = ("finished", "failed")
FETCH_MANY_LIMIT = 20  # the most ids one ``/fetch-many`` request takes
UPLOAD_LIMIT = 2 * 1024 * 1024  # the largest image ``/upload`` takes

_ONLY_FOR = {
    "image_url": "image2video",
    "end_image_url": "image2video",
    "video_url": "video2video",
    "aspect_ratio": "text2video",
}
_URL_FIELDS = ("image_url", "end_image_url", "video_url", "webhook_url")


class RefusalCode(str, enum.Enum):
    """Why a workshop gateway said no: the ``code`` beside each error's ``msg`` (SPEC §8).

    Clients act on the code, never on the message, which is for people and may change.
    """

    INVALID_REQUEST = "invalid_request"  # the body, a field or an id is wrong (400, 413)
    UNAUTHORIZED = "unauthorized"  # no credential, or one the gateway does not know (401)
    TOKEN_REVOKED = "token_revoked"  # the instructor revoked this participant (401)
    NOT_FOUND = "not_found"  # no such task (or another participant's), or no such route
    QUOTA_EXCEEDED = "quota_exceeded"  # with ``limit``: jobs, credits or concurrent (403)
    RATE_LIMITED = "rate_limited"  # this caller is too fast: wait ``Retry-After`` (429)
    WEBHOOK_TARGET_REFUSED = "webhook_target_refused"
    JOIN_CODE_UNKNOWN = "join_code_unknown"  # no such join code (403)
    ROOM_FULL = "room_full"  # the join code's seats are all taken (403)
    JOIN_CODE_CLOSED = "join_code_closed"  # the instructor closed this join code (403)
    NAME_TAKEN = "name_taken"  # the name and its numbered variants are all taken (409)
    NAME_CONFUSABLE = "name_confusable"  # the name looks like another participant's (409)
    UPSTREAM_BUSY = "upstream_busy"  # the upstream is rate limiting the room (429)
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"  # it failed; nothing was submitted (503)
    SUBMISSION_UNKNOWN = "submission_unknown"  # sent, no answer: it may exist; never resend
    UPSTREAM_KEY_REFUSED = "upstream_key_refused"  # the instructor's key was refused (502)
    UPSTREAM_REFUSED = "upstream_refused"  # the upstream said no to this request (502)
    ALREADY_SENT = "already_sent"  # a cancel came after the job left the queue (409)


class QuotaLimit(str, enum.Enum):
    """Which part of a participant's quota ran out (``limit`` beside ``quota_exceeded``)."""

    JOBS = "jobs"
    CREDITS = "credits"
    CONCURRENT = "concurrent"


def is_http_url(value: object) -> TypeGuard[str]:
    """True for an absolute http(s) URL with a host: the only kind we send or show as a link."""
    if not isinstance(value, str) or any(c.isspace() for c in value.strip("\n")):
        return False
    parts = urlsplit(value)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


@dataclass
class GenerationRequest:
    """The body of ``POST /runway-imagine``. ``None`` means "not set" and is left out."""

    prompt: str
    generation_type: str = "text2video"
    image_url: str | None = None
    end_image_url: str | None = None
    video_url: str | None = None
    aspect_ratio: str | None = None
    model: str | None = None
    duration: int | None = None
    flip: bool | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # A secret read from a file ends in a newline: only its surrounding whitespace goes.
        if isinstance(self.webhook_secret, str):
            self.webhook_secret = self.webhook_secret.strip() or None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> GenerationRequest:
        """Build from a JSON body; unknown keys are ignored, missing ones stay unset."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in payload.items() if k in names}
        values.setdefault("prompt", None)
        values.setdefault("generation_type", None)
        return cls(**values)

    def problems(self) -> list[Problem]:
        """Every problem with this request, in form order; empty when it is valid."""
        found: list[Problem] = []
        add = lambda name, msg: found.append(Problem(name, msg))  # noqa: E731

        if not isinstance(self.prompt, str) or not self.prompt.strip():
            add("prompt", "prompt is required")
        kind: str | None = self.generation_type
        if kind not in GENERATION_TYPES:
            add("generation_type", f"generation_type must be one of {', '.join(GENERATION_TYPES)}")
            kind = None
        if kind == "image2video" and not self.image_url:
            add("image_url", "image_url is required for image2video")
        if kind == "video2video" and not self.video_url:
            add("video_url", "video_url is required for video2video")
        for name, only in _ONLY_FOR.items():
            if kind and kind != only and getattr(self, name) is not None:
                add(name, f"{name} is only for {only}, not {kind}")
        for name in _URL_FIELDS:
            value = getattr(self, name)
            if value is not None and not is_http_url(value):
                add(name, f"{name} must be an http(s) URL")
        if self.aspect_ratio is not None and self.aspect_ratio not in ASPECT_RATIOS:
            add("aspect_ratio", f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}")
        if self.model is not None and self.model not in MODELS:
            add("model", f"model must be one of {', '.join(MODELS)}")
        if self.duration is not None and (
            not isinstance(self.duration, int)
            or isinstance(self.duration, bool)
            or self.duration not in DURATIONS
        ):
            add("duration", "duration must be the integer 5 or 10")
        if self.flip is not None and not isinstance(self.flip, bool):
            add("flip", "flip must be true or false")
        if self.webhook_secret is not None:
            if not isinstance(self.webhook_secret, str):
                add("webhook_secret", "webhook_secret must be a string")
            elif (problem := key_problem(self.webhook_secret, "webhook_secret")) is not None:
                add("webhook_secret", problem)
        return found

    def validate(self) -> GenerationRequest:
        """Raise one `ValidationError` naming every problem; return self when valid."""
        found = self.problems()
        if found:
            raise ValidationError(found)
        return self

    def to_payload(self) -> dict[str, Any]:
        """The exact JSON body: set fields only, in the documented order."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    def public_payload(self) -> dict[str, Any]:
        """The body without the webhook secret: what may be shown, logged or journalled."""
        payload = self.to_payload()
        payload.pop("webhook_secret", None)
        return payload


def finite_number(value: Any, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A number from outside (the network, the journal) as a finite float in [low, high].

    Accepts numbers and numeric strings; NaN, infinities, overflowing or out-of-range
    values, booleans and anything else are None: the field is treated as absent.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().rstrip("%")
        if len(value) > 40:  # no real number is this long; int() of one would be slow
            return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number) or not low <= number <= high:
        return None
    return number


def parse_percentage(value: Any) -> int | None:
    """0..100 from a number or a string ("40", "40%"); absent when not a finite number."""
    number = finite_number(value)
    return None if number is None else max(0, min(100, round(number)))


@dataclass(frozen=True)
class Task:
    """A normalised view of one fetch result; ``raw`` keeps the reply as it came.

    ``queue_position``: while a workshop gateway holds the job in its queue, its place in
    line (1 is next); None everywhere else.
    """

    task_id: str
    status: str
    percentage: int | None = None
    video_url: str | None = None
    message: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    queue_position: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> Task:
        """Parse a reply; a wrong shape is an `ApiframeError`, never a KeyError."""
        if not isinstance(data, Mapping) or not isinstance(data.get("task_id"), str):
            raise ApiframeError(f"unexpected task shape from the server: {shorten(data, 200)!r}")
        status = data.get("status")
        message = data.get("message") or data.get("error")
        video_url = data.get("video_url")
        return cls(
            task_id=data["task_id"],
            status=str(status) if status is not None else "unknown",
            percentage=parse_percentage(data.get("percentage")),
            video_url=video_url if isinstance(video_url, str) and video_url else None,
            message=str(message) if message else None,
            raw=dict(data),
            queue_position=_position(data.get("queue_position")),
        )

    @classmethod
    def unknown(cls, task_id: str, detail: str = "") -> Task:
        """A terminal stand-in for a task the server says it does not know."""
        message = f"the server does not know task {shorten(task_id)}{detail}: check the id, " \
            "or the backend it was submitted to"
        return cls(
            task_id=task_id,
            status="failed",
            message=message,
            raw={"task_id": task_id, "status": "failed", "message": message, "not_found": True},
        )

    @property
    def is_finished(self) -> bool:
        return self.status == "finished"

    @property
    def is_failed(self) -> bool:
        return self.status == "failed"

    @property
    def is_done(self) -> bool:
        """Terminal: finished or failed. Any other status, known or new, means still running."""
        return self.status in TERMINAL_STATUSES

    def same_progress(self, other: Task | None) -> bool:
        """True when nothing a user can see changed (status, percentage, video, message)."""
        return other is not None and (
            self.status,
            self.percentage,
            self.video_url,
            self.message,
            self.queue_position,
        ) == (other.status, other.percentage, other.video_url, other.message, other.queue_position)


def _position(value: Any) -> int | None:
    """A place in a queue: a whole number from 1 (as number or string), else absent."""
    number = finite_number(value, 1, 10**9)
    return int(number) if number is not None and number == int(number) else None


def ordinal(number: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th`` … ``11th``, ``21st``: a place in line, in words."""
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th')}"


def waiting_label(task: Task) -> str | None:
    """``queued · 3rd in line`` for a job waiting in a gateway's queue, else None."""
    if task.queue_position is None or task.is_done:
        return None
    return f"queued · {ordinal(task.queue_position)} in line"


def video_filename(prompt: str | None, task_id: str | None = None) -> str:
    """A safe, readable file name for a clip: ``a-lighthouse-in-a-storm-1a2b3c4d.mp4``."""
    words = re.findall(r"[a-z0-9]+", (prompt or "").lower())
    stem = "-".join(words)[:48].strip("-") or "runway-video"
    suffix = re.sub(r"[^A-Za-z0-9]", "", task_id or "")[:8]
    return f"{stem}-{suffix}.mp4" if suffix else f"{stem}.mp4"
