"""The HTTP face of the gateway: APIFRAME's routes, error shape and status codes.

Every API request is authenticated first (401 for an unknown or revoked token), then
rate-limited per participant (429 with ``Retry-After``), then served. Errors always have
APIFRAME's shape ``{"errors": [{"msg": …, "code": …}]}``: the message for people, the code
(`RefusalCode`) for programs. They never carry a secret: messages that came from the
upstream pass through `Context.scrub` on their way out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tornado.web import HTTPError, RequestHandler

from ..errors import (
    ApiframeError,
    AuthenticationError,
    NetworkError,
    RateLimitError,
    ServerError,
    SubmissionUnknownError,
    ValidationError,
)
from ..models import QuotaLimit, RefusalCode
from .auth import ParticipantAuth
from .db.database import JobState
from .db.ledger import JobRow, QuotaRefused
from .db.roster import CredentialRevoked, Participant, Roster, RosterError
from .dispatcher import UNKNOWN_OUTCOME
from .metrics import Meter
from .ratelimit import JoinGuard, RateLimiter
from .submissions import WebhookTargetRefused
from .workshop import Workshop, participant_task

__all__ = ["ApiError", "Context", "api_routes"]

MAX_JSON_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_TASK_ID = 200
FETCH_MANY_RANGE = (2, 20)
_INVALID = RefusalCode.INVALID_REQUEST
# a join refusal's status: a name to change is a conflict, a bad one a bad request
_JOIN_STATUS = {
    RefusalCode.INVALID_REQUEST: 400,
    RefusalCode.NAME_TAKEN: 409,
    RefusalCode.NAME_CONFUSABLE: 409,
}
_NOT_CANCELLABLE = (
    "this job has left the queue (sent upstream, or ended): only a job still waiting in "
    "the queue can be cancelled"
)


@dataclass
class Context:
    """What every handler needs, built once by the application."""

    auth: ParticipantAuth
    workshop: Workshop
    roster: Roster
    limiter: RateLimiter
    join_guard: JoinGuard
    prefix: str
    public_url: str | None
    secrets: tuple[str, ...] = ()
    meter: Meter = field(default_factory=Meter)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "…")
        return text


class ApiError(HTTPError):
    """Ends a request with ``{"errors": [{"msg": …, "code": …, **details}, …]}``.

    ``code`` is the machine-readable reason (`RefusalCode`); ``details`` add what a client
    needs to act on it (``limit`` for a quota). Without a code, only ``msg`` is sent.
    """

    def __init__(
        self,
        status: int,
        *messages: str,
        code: RefusalCode | None = None,
        retry_after: int | None = None,
        **details: str,
    ) -> None:
        super().__init__(status)
        self.messages = messages
        self.code = code
        self.details = details
        self.retry_after = retry_after

    def errors(self, scrub: Callable[[str], str]) -> list[dict[str, str]]:
        reason = {"code": self.code.value, **self.details} if self.code is not None else {}
        return [{"msg": scrub(message), **reason} for message in self.messages]


class BaseApiHandler(RequestHandler):
    """JSON in and out, APIFRAME's error shape, and the caller's identity for the access log."""

    participant: Participant | None = None
    revoked_name: str | None = None

    def initialize(self, context: Context) -> None:
        self.context = context

    @property
    def caller_name(self) -> str | None:
        """Who made this request, as far as it got: a revoked participant is named too."""
        return self.participant.name if self.participant is not None else self.revoked_name

    def compute_etag(self) -> None:
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            errors = exc.errors(self.context.scrub)
            if exc.retry_after is not None:
                self.set_header("Retry-After", str(exc.retry_after))
        else:  # tornado's own refusals (a wrong method, say) and failures
            errors = [{"msg": self._reason or "error"}]
            if status_code == 404:
                errors[0]["code"] = RefusalCode.NOT_FOUND.value
            elif 400 <= status_code < 500:
                errors[0]["code"] = _INVALID.value
        if errors and "code" in errors[0]:
            self.context.meter.refused(errors[0]["code"])
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"errors": errors}))

    def reply(self, body: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def reply_task(self, row: JobRow) -> None:
        """The task as its owner sees it (with its place, while it waits in the queue)."""
        places = await self.context.workshop.submissions.places([row])
        self.reply(participant_task(row, self.video_base(), places.get(row.task_id)))

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object of valid text; anything else is the sender's mistake (400).

        Refused: bodies too deep to parse, ``NaN``/``Infinity``, numbers too long to be
        numbers, and lone surrogates (``"\\ud83c"`` is valid JSON, but no database stores it
        and no UTF-8 carries it on).
        """
        if len(self.request.body) > MAX_JSON_BYTES:
            raise ApiError(
                413, f"the request body is larger than {MAX_JSON_BYTES} bytes", code=_INVALID
            )
        try:
            body = json.loads(
                self.request.body or b"null", parse_float=_finite, parse_constant=_no_constant
            )
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError):  # UnicodeError is a ValueError
            body = None
        if not isinstance(body, dict):
            raise ApiError(
                400, "the request body must be a JSON object of valid text", code=_INVALID
            )
        return body

    def video_base(self) -> str:
        if self.context.public_url:
            return self.context.public_url
        return f"{self.request.protocol}://{self.request.host}{self.context.prefix}"


class AuthenticatedHandler(BaseApiHandler):
    async def prepare(self) -> None:
        header = self.request.headers.get("Authorization")
        try:
            who = await self.context.auth.authenticate(header)
        except CredentialRevoked as exc:
            self.revoked_name = exc.name  # the access log names who was refused
            raise ApiError(
                401,
                "this workshop token was revoked: ask the instructor",
                code=RefusalCode.TOKEN_REVOKED,
            ) from None
        if who is None:
            raise ApiError(401, "Invalid API key", code=RefusalCode.UNAUTHORIZED)
        self.participant = who
        wait = await self.context.limiter.retry_after(who.id)
        if wait:
            raise ApiError(
                429, "too many requests: slow down", code=RefusalCode.RATE_LIMITED, retry_after=wait
            )

    @property
    def who(self) -> Participant:
        assert self.participant is not None
        return self.participant


class ImagineHandler(AuthenticatedHandler):
    async def post(self) -> None:
        body = self.json_body()
        try:
            task_id = await self.context.workshop.submissions.submit(self.who, body)
        except QuotaRefused as exc:
            raise ApiError(
                403, str(exc), code=RefusalCode.QUOTA_EXCEEDED, limit=exc.limit.value
            ) from None
        except WebhookTargetRefused as exc:
            raise ApiError(400, *exc.problems, code=RefusalCode.WEBHOOK_TARGET_REFUSED) from None
        except ValidationError as exc:
            raise ApiError(400, *exc.problems, code=_INVALID) from None
        except ApiframeError as exc:
            raise _upstream_error(exc, submission=True) from None
        self.reply({"task_id": task_id})


class FetchHandler(AuthenticatedHandler):
    async def post(self) -> None:
        task_id = self.json_body().get("task_id")
        if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_TASK_ID:
            raise ApiError(400, "task_id is required", code=_INVALID)
        row = await self.context.workshop.task(self.who, task_id)
        if row is None:
            raise ApiError(404, "Task not found", code=RefusalCode.NOT_FOUND)
        await self.reply_task(row)


class FetchManyHandler(AuthenticatedHandler):
    async def post(self) -> None:
        ids = self.json_body().get("task_ids")
        low, high = FETCH_MANY_RANGE
        if not isinstance(ids, list) or not all(
            isinstance(i, str) and 0 < len(i) <= MAX_TASK_ID for i in ids
        ):
            raise ApiError(400, "task_ids must be a list of task ids", code=_INVALID)
        if not low <= len(ids) <= high:
            raise ApiError(400, f"task_ids must hold between {low} and {high} ids", code=_INVALID)
        base, workshop = self.video_base(), self.context.workshop
        rows = await workshop.tasks(self.who, ids)
        places = await workshop.submissions.places(rows)
        shown = [participant_task(row, base, places.get(row.task_id)) for row in rows]
        self.reply({"tasks": shown})


class TaskHandler(AuthenticatedHandler):
    """``DELETE /task/<id>``: withdraw a job that waits in the queue; its quota is free again.

    A job that has left the queue cannot be withdrawn (409 ``already_sent``): the upstream
    may have started it, and it is paid for.
    """

    async def delete(self, task_id: str) -> None:
        if not task_id or len(task_id) > MAX_TASK_ID:
            raise ApiError(400, "a task id is required", code=_INVALID)
        row = await self.context.workshop.submissions.cancel(self.who, task_id)
        if row is None:
            raise ApiError(404, "Task not found", code=RefusalCode.NOT_FOUND)
        if row.state != JobState.CANCELLED:
            raise ApiError(409, _NOT_CANCELLABLE, code=RefusalCode.ALREADY_SENT)
        await self.reply_task(row)


class AccountHandler(AuthenticatedHandler):
    async def get(self) -> None:
        self.reply(await self.context.workshop.account(self.who))


class UploadHandler(AuthenticatedHandler):
    async def post(self) -> None:
        await self._needs_a_job_left()
        files = self.request.files.get("image") or []
        if not files or not files[0].body:
            raise ApiError(400, "the multipart field 'image' is required", code=_INVALID)
        data = files[0].body
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(400, "image must be at most 2 MB", code=_INVALID)
        upstream = self.context.workshop.upstream
        try:
            with self.context.meter.upstream("upload"):
                url = await upstream.run(upstream.client.upload_image, data)
        except ValidationError as exc:
            raise ApiError(400, *exc.problems, code=_INVALID) from None
        except ApiframeError as exc:
            raise _upstream_error(exc) from None
        self.reply({"imageURL": url})

    async def _needs_a_job_left(self) -> None:
        """An upload uses the real key: only for someone who could still submit a job."""
        account = await self.context.workshop.account(self.who)
        if account.get("jobs_left", 0) == 0:  # none left, or no quota at all
            limit = QuotaLimit.JOBS
        elif account["credits"] == 0:
            limit = QuotaLimit.CREDITS
        else:
            return
        raise ApiError(
            403,
            f"quota reached: no {limit.value} left, so no image can be used in a job",
            code=RefusalCode.QUOTA_EXCEEDED,
            limit=limit.value,
        )


class JoinHandler(BaseApiHandler):
    """``POST /join {"code", "name"}`` -> ``{"token", "name"}`` while seats remain.

    Guarded per client address (`JoinGuard`): a code is checked only while the address (and
    everyone) has guesses left, so a short code cannot be found by trying them all.
    """

    async def post(self) -> None:
        guard, address = self.context.join_guard, str(self.request.remote_ip)
        _refuse_while(await guard.attempt(address), "too many join attempts: wait a moment")
        body = self.json_body()
        code, name = body.get("code"), body.get("name")
        if not isinstance(code, str) or not code or not isinstance(name, str) or not name.strip():
            raise ApiError(400, 'send {"code": …, "name": …}', code=_INVALID)
        async with guard.turn(address):
            _refuse_while(await guard.guess(address), "too many wrong join codes: wait a while")
            previous = body.get("previous")  # the token this machine had: revoked holds
            previous = previous if isinstance(previous, str) and len(previous) < 512 else None
            try:
                token, name = await self.context.workshop.run_db(
                    self.context.roster.join, code, name, previous
                )
            except RosterError as exc:
                raise ApiError(_JOIN_STATUS.get(exc.code, 403), str(exc), code=exc.code) from None
            await guard.joined(address)
        self.reply({"token": token, "name": name})


def _refuse_while(wait: int, message: str) -> None:
    if wait:
        raise ApiError(429, message, code=RefusalCode.RATE_LIMITED, retry_after=wait)


class HealthHandler(BaseApiHandler):
    def get(self) -> None:
        self.reply({"service": "runway-widget gateway", "ok": True})


class NotFoundHandler(BaseApiHandler):
    def prepare(self) -> None:
        raise ApiError(404, "Not found", code=RefusalCode.NOT_FOUND)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _upstream_error(exc: ApiframeError, *, submission: bool = False) -> ApiError:
    """What the participant is told when the upstream failed (never the upstream's key)."""
    if isinstance(exc, SubmissionUnknownError) or (
        submission and isinstance(exc, ServerError) and exc.status_code != 503
    ):
        return ApiError(504, UNKNOWN_OUTCOME, code=RefusalCode.SUBMISSION_UNKNOWN)
    if isinstance(exc, RateLimitError):
        wait = max(1, math.ceil(exc.retry_after or 5))
        return ApiError(
            429,
            "the upstream is busy: try again shortly",
            code=RefusalCode.UPSTREAM_BUSY,
            retry_after=wait,
        )
    untouched = "; nothing was submitted and your quota is untouched" if submission else ""
    if isinstance(exc, (ServerError, NetworkError)):  # a network error here: certainly unsent
        return ApiError(
            503,
            f"the gateway cannot reach its upstream right now{untouched}",
            code=RefusalCode.UPSTREAM_UNAVAILABLE,
            retry_after=2,
        )
    if isinstance(exc, AuthenticationError):
        return ApiError(
            502,
            f"the gateway's upstream key was refused: tell the instructor{untouched}",
            code=RefusalCode.UPSTREAM_KEY_REFUSED,
        )
    return ApiError(
        502, f"the upstream refused: {exc.detail}{untouched}", code=RefusalCode.UPSTREAM_REFUSED
    )


def api_routes(context: Context) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """The APIFRAME routes under ``context.prefix`` (``/videos`` is added by the app)."""
    routes: dict[str, type[RequestHandler]] = {
        "/runway-imagine": ImagineHandler,
        "/fetch": FetchHandler,
        "/fetch-many": FetchManyHandler,
        "/account": AccountHandler,
        "/upload": UploadHandler,
        "/join": JoinHandler,
        "/health": HealthHandler,
        "/task/([^/]+)": TaskHandler,
    }
    prefix = context.prefix.rstrip("/")
    return [(prefix + path, handler, {"context": context}) for path, handler in routes.items()]
