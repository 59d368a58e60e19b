"""``runway-widget``: generate, follow and list videos from a terminal.

Output contract: status lines and the progress bar go to stderr; stdout carries only
results (the saved path, a task, the account, the history), so the command composes in
scripts. Expected failures print one line and exit non-zero: 2 for a bad command line or
request, 1 for any other failure, 130 for Ctrl-C. Never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._terminal import inert, inert_json
from .._version import __version__
from ..client.apiframe import ApiframeClient
from ..errors import (
    ApiframeError,
    CancelRefusedError,
    Hint,
    QuotaExceededError,
    TaskFailedError,
    TaskNotFoundError,
    TaskState,
    TaskTimeoutError,
    ValidationError,
    advice,
    plural,
)
from ..models import (
    ASPECT_RATIOS,
    DURATIONS,
    GENERATION_TYPES,
    MODELS,
    GenerationRequest,
    QuotaLimit,
    Task,
    video_filename,
    waiting_label,
)
from .destination import DestinationError, check_output, fallback_folder, free_name

if TYPE_CHECKING:
    from ..store import JobRecord

__all__ = ["DEMO_NOTICE", "NO_KEY", "main"]

DEMO_NOTICE = "Using the built-in demo backend (no API key needed)"
NO_KEY = (
    "no API key, and no workshop joined: in a workshop, run the line on the board first "
    "(`runway-widget join URL CODE`); with your own key, set APIFRAME_API_KEY; or add --demo "
    "to use the built-in demo backend"
)
RECENT_JOBS = 20
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
_UPLOAD_PLACEHOLDER = "https://upload.invalid/local-image"  # validates a local file's field


class CommandError(Exception):
    """An expected failure of a command: printed as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code instead of exiting (callable from tests)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already explained
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        _check_numbers(args)
        with _warnings_on_stderr():
            return args.run(args)
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except ValidationError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except DestinationError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except QuotaExceededError as exc:
        more = exc.limit in (QuotaLimit.JOBS.value, QuotaLimit.CREDITS.value)
        _say(f"error: {exc}" + ("; ask the instructor for more" if more else ""))
        return EXIT_FAILURE
    except (ApiframeError, CommandError) as exc:
        _say(f"error: {exc}")
        return getattr(exc, "code", EXIT_FAILURE)


# -- commands ------------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    """Everything that can be checked is checked before the (paid) submission."""
    images = _local_images(args)
    request = GenerationRequest(
        prompt=args.prompt,
        generation_type=args.type,
        image_url=args.image_url,
        end_image_url=args.end_image_url,
        video_url=args.video_url,
        aspect_ratio=args.aspect_ratio,
        model=args.model,
        duration=args.duration,
        flip=True if args.flip else None,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
    )
    _with_images(request, dict.fromkeys(images, _UPLOAD_PLACEHOLDER)).validate()
    out = check_output(args.out, force=args.force)
    with _client(args) as client:
        uploaded = {field: client.upload_image(path) for field, path in images.items()}
        request = _with_images(request, uploaded)
        try:
            task_id = client.imagine(request)
        except KeyboardInterrupt:
            raise CommandError(
                f"interrupted during the submission: {advice(Hint.CHECK_HISTORY)}", EXIT_INTERRUPTED
            ) from None
        _say(f"Submitted task {task_id} (follow it any time: runway-widget fetch {task_id})")
        task = _wait_or_explain(client, task_id, args.timeout)
        if task is None:
            return EXIT_INTERRUPTED
        path = _save(client, task, out or Path(video_filename(args.prompt, task_id)), args.force)
    _say(f"Saved the video of task {task_id}")
    _out(str(path))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    with _task_client(args) as (client, task_id):
        task = client.fetch(task_id)
        client.store.record_task(task, backend=client.base_url)
    _print_task(task, as_json=args.json)
    return 0


def _wait(args: argparse.Namespace) -> int:
    with _task_client(args) as (client, task_id):
        task = _wait_or_explain(client, task_id, args.timeout)
    if task is None:
        return EXIT_INTERRUPTED
    _print_task(task, as_json=args.json)
    return 0


def _download(args: argparse.Namespace) -> int:
    out = check_output(args.out, force=args.force)
    with _task_client(args) as (client, task_id):
        task = client.fetch(task_id)
        client.store.record_task(task, backend=client.base_url)
        if task.is_failed:
            raise TaskFailedError(task)
        if not task.is_finished:
            raise CommandError(
                f"task {task_id} has no video yet ({_state(task)}): "
                f"`runway-widget wait {task_id}` first"
            )
        record = client.store.get(task_id)
        default = Path(video_filename(record.prompt if record else None, task_id))
        path = _save(client, task, out or default, args.force)
    _say(f"Saved the video of task {task_id}")
    _out(str(path))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    """Withdraw a job waiting in a workshop gateway's queue; its quota is given back."""
    with _task_client(args) as (client, task_id):
        try:
            task = client.cancel(task_id)
        except CancelRefusedError:
            raise CommandError(
                f"task {task_id} has left the gateway's queue (it was sent upstream, or "
                f"ended), so it cannot be cancelled: `runway-widget wait {task_id}`"
            ) from None
    _say(f"Cancelled task {task_id}: nothing was sent upstream, its quota is free again")
    _print_task(task, as_json=args.json)
    return 0


def _account(args: argparse.Namespace) -> int:
    with _client(args) as client:
        info = client.account()
    if args.json:
        _out_json(info)
    elif client.is_workshop:
        _print_seat(client, info)
    else:
        for name in ("email", "plan", "credits", "total_images"):
            _out(f"{name}: {info.get(name, '?')}")
    return 0


def _print_seat(client: ApiframeClient, info: dict[str, Any]) -> None:
    """A workshop participant's account: whose seat, what is left of the quota (None in it
    means unlimited), and who to ask when nothing is."""

    def left(key: str) -> str:
        value = info.get(key)
        return "unlimited" if value is None else str(value)

    _out(f"participant: {client.participant or '?'} (workshop at {client.base_url})")
    _out(f"jobs left: {left('jobs_left')}")
    _out(f"credits left: {left('credits')}")
    queued = f", queued: {info['queued']}" if "queued" in info else ""
    _out(f"jobs used: {info.get('total_images', '?')}, running now: {info.get('running', 0)}"
         + queued)
    if info.get("jobs_left") == 0 or info.get("credits") == 0:
        _say("your workshop quota is used up: ask the instructor for more")


def _history(args: argparse.Namespace) -> int:
    from ..store import JobStore

    store = JobStore()
    history = store.load()
    jobs = history.jobs if args.all else history.jobs[:RECENT_JOBS]
    if args.json:
        _out_json([dataclasses.asdict(job) for job in jobs])
    elif not history.jobs:
        _say(f"No jobs yet (history: {store.path})")
    for job in [] if args.json else jobs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.submitted_at))
        state = job.status + (
            f" {job.percentage}%" if job.percentage is not None and not job.is_done else ""
        )
        prompt = inert(job.prompt or "")
        prompt = " ".join(prompt.split())
        prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        where = job.local_path or job.video_url or job.message or ""
        _out(f"{when}  {inert(job.task_id)}  {inert(state):<16}  {prompt:<40}  {where}".rstrip())
    hidden = len(history.jobs) - len(jobs)
    if hidden:
        _say(f"{plural(hidden, 'older job')} not shown: add --all")
    if history.skipped:
        _say(
            f"{plural(len(history.skipped), 'line')} of {store.path} could not be read: "
            + "; ".join(history.skipped[:3])
        )
    return 0


def _demo_server(args: argparse.Namespace) -> int:
    demo = _demo_module()
    seconds = args.job_seconds if args.job_seconds is not None else _demo_seconds_from_env()
    server = demo.DemoServer(port=args.port, job_seconds=seconds, concurrency=args.concurrency)
    try:
        server.start()
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        raise CommandError(
            f"cannot serve the demo backend on 127.0.0.1:{args.port}: "
            + (
                "the port is taken (choose another --port, or 0 for a free one)"
                if taken
                else (exc.strerror or str(exc))
            )
        ) from None
    try:
        print(f"Demo backend running at {server.base_url}", flush=True)
        print(f"  export APIFRAME_BASE_URL={server.base_url}", flush=True)
        print(f"  export APIFRAME_API_KEY={server.api_key}", flush=True)
        _say("Press Ctrl-C to stop.")
        threading.Event().wait()
    except KeyboardInterrupt:
        _say("stopped")
    finally:
        server.stop()
    return 0


# -- waiting and saving --------------------------------------------------------------------------


def _wait_or_explain(client: ApiframeClient, task_id: str, timeout: float) -> Task | None:
    """The finished task; None after Ctrl-C (said how to follow it); CommandError on timeout."""
    try:
        return _wait_with_bar(client, task_id, timeout)
    except KeyboardInterrupt:
        _say(f"stopped waiting; task {task_id} goes on: {_follow_hint(client, task_id)}")
        return None
    except TaskTimeoutError as exc:
        last = f" ({_state(exc.task)})" if exc.task is not None else ""
        raise CommandError(
            f"stopped waiting after {timeout:g}s; task {task_id} goes on{last}: "
            + _follow_hint(client, task_id)
        ) from None


def _follow_hint(client: ApiframeClient, task_id: str) -> str:
    if client.is_demo:
        return "but a demo job ends with this process (try a longer --timeout)"
    return f"`runway-widget wait {task_id}`, then `runway-widget download {task_id}`"


def _wait_with_bar(client: ApiframeClient, task_id: str, timeout: float | None) -> Task:
    """``client.wait`` behind a tqdm bar; every change is journalled as it is seen."""
    from tqdm import tqdm

    with tqdm(
        total=100,
        file=sys.stderr,
        desc="submitted",
        bar_format="{desc:<10} {n:3.0f}%|{bar}| {elapsed}",
        dynamic_ncols=True,
    ) as bar:

        def show(task: Task) -> None:
            bar.set_description_str(waiting_label(task) or inert(task.status)[:24], refresh=False)
            done = 100 if task.is_finished else task.percentage
            if done is not None and done > bar.n:
                bar.update(done - bar.n)
            else:
                bar.refresh()

        return client.wait(task_id, timeout=timeout, on_progress=show)


def _save(client: ApiframeClient, task: Task, target: Path, force: bool) -> Path:
    """Download the clip to ``target``; when that fails locally, keep it elsewhere and say where.

    Never over a file that appeared while the job ran (unless ``force``).
    """
    if target.exists() and not force:
        wanted, target = target, free_name(target)
        _say(f"{wanted} appeared meanwhile and is kept; saving to {target} instead")
    try:
        return client.download(task, target)
    except OSError as exc:
        problem = f"could not save to {target} ({exc.strerror or exc})"
    except ApiframeError as exc:
        raise CommandError(
            f"{exc}; the clip stays on the server for now: "
            f"`runway-widget download {task.task_id} --out FILE`"
        ) from None
    kept = free_name(fallback_folder(client.store.folder / "clips") / target.name)
    try:
        path = client.download(task, kept)
    except OSError as exc:
        raise CommandError(
            f"{problem}, nor to {kept} ({exc.strerror or exc}); the clip stays on the server "
            f"for now: `runway-widget download {task.task_id} --out FILE`"
        ) from None
    _say(f"{problem}; the clip is kept at {path}")
    return path


# -- tasks from earlier runs ---------------------------------------------------------------------


@contextlib.contextmanager
def _task_client(args: argparse.Namespace) -> Iterator[tuple[ApiframeClient, str]]:
    """A client for a task named on the command line; a demo task that is gone says so."""
    from ..store import JobStore

    task_id = args.task_id
    record = JobStore().get(task_id)
    ran_on_demo = record is not None and record.demo
    try:
        client = _client(args)
    except CommandError:
        if ran_on_demo:  # no key: and the demo server it ran on is gone anyway
            raise CommandError(_demo_gone(task_id, record)) from None
        raise
    try:
        with client:
            yield client, task_id
    except TaskNotFoundError:
        if ran_on_demo:
            raise CommandError(_demo_gone(task_id, record)) from None
        if args.demo:
            raise CommandError(_not_on_this_demo(task_id, record)) from None
        raise


def _demo_gone(task_id: str, record: JobRecord | None) -> str:
    where = f" ({record.backend})" if record is not None and record.backend else ""
    kept = (
        f"; its clip was saved to {record.local_path}"
        if record is not None and record.local_path
        else ""
    )
    return (
        f"task {task_id} ran on a built-in demo backend{where} that has ended: demo jobs live "
        f"only as long as the process that ran them{kept}"
    )


def _not_on_this_demo(task_id: str, record: JobRecord | None) -> str:
    if record is not None and record.backend:
        return f"task {task_id} was submitted to {record.backend}, not to a demo: drop --demo"
    return (
        f"task {task_id} is not on this demo backend: each command starts a new, empty one, "
        "so demo tasks of earlier commands are gone"
    )


# -- plumbing ------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> ApiframeClient:
    if getattr(args, "demo", False):
        _demo_seconds_from_env()
        _say(DEMO_NOTICE)
        return ApiframeClient.demo()
    client = ApiframeClient()
    if not client.api_key:
        raise CommandError(NO_KEY)
    return client


def _demo_module() -> Any:
    try:
        from .. import demo
    except ImportError as exc:
        raise CommandError(str(exc) or "the demo needs: pip install av numpy Pillow") from exc
    return demo


def _demo_seconds_from_env() -> float | None:
    try:
        seconds: float | None = _demo_module().job_seconds_from_env()
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    return seconds


def _local_images(args: argparse.Namespace) -> dict[str, Path]:
    """``--image-url`` / ``--end-image-url`` values that name local files (uploaded later)."""
    files: dict[str, Path] = {}
    for field in ("image_url", "end_image_url"):
        value = getattr(args, field)
        if not value or "://" in value:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            flag = "--" + field.replace("_", "-")
            raise CommandError(
                f"{flag} {value}: no such image file (give a local image or an http(s) URL)",
                EXIT_USAGE,
            )
        files[field] = path
    return files


def _with_images(request: GenerationRequest, urls: dict[str, str]) -> GenerationRequest:
    return dataclasses.replace(
        request,
        image_url=urls.get("image_url", request.image_url),
        end_image_url=urls.get("end_image_url", request.end_image_url),
    )


def _check_numbers(args: argparse.Namespace) -> None:
    """Out-of-range numbers, said in one line before anything happens."""
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise CommandError(
            f"--timeout must be a positive number of seconds, not {timeout:g}", EXIT_USAGE
        )
    seconds = getattr(args, "job_seconds", None)
    if seconds is not None and not (math.isfinite(seconds) and seconds >= 0):
        raise CommandError(f"--job-seconds must be 0 or more, not {seconds:g}", EXIT_USAGE)
    concurrency = getattr(args, "concurrency", None)
    if concurrency is not None and concurrency < 1:
        raise CommandError(f"--concurrency must be 1 or more, not {concurrency}", EXIT_USAGE)
    if args.run is _demo_server and not 0 <= args.port <= 65535:
        raise CommandError(
            f"--port must be between 0 and 65535 (0: a free one), not {args.port}", EXIT_USAGE
        )


def _state(task: TaskState) -> str:
    waiting = waiting_label(task) if isinstance(task, Task) else None
    if waiting is not None:
        return waiting
    percent = f" {task.percentage}%" if task.percentage is not None and not task.is_done else ""
    return f"{task.status}{percent}"


def _print_task(task: Task, *, as_json: bool) -> None:
    if as_json:
        _out_json(dict(task.raw))
        return
    _out(f"{task.task_id}: {_state(task)}")
    if task.video_url:
        _out(f"video: {task.video_url}")
    if task.message:
        _out(f"message: {task.message}")


def _out(line: str) -> None:
    """One line of result on stdout, made inert: a server's newline cannot forge another line."""
    print(inert(line), flush=True)


def _out_json(data: Any) -> None:
    print(inert_json(data), flush=True)


class _WarningLine(logging.Formatter):
    """``warning: <message>``, one inert line: never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return inert(f"warning: {record.getMessage()}")


class _FirstOfEachKind(logging.Filter):
    """One line per kind of problem (a history that cannot be written fails at every step)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, object]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.msg)
        first = kind not in self._seen
        self._seen.add(kind)
        return first


@contextlib.contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    """The package's warnings (a history it cannot write, say) shown while a command runs.

    Skipped under ``RUNWAY_WIDGET_LOG``, which already sends the package's log to stderr.
    """
    if os.environ.get("RUNWAY_WIDGET_LOG"):
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_WarningLine())
    handler.addFilter(_FirstOfEachKind())
    package = logging.getLogger("runway_widget")
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)


def _say(line: str) -> None:
    """A status line on stderr, made inert: it often quotes the server."""
    print(inert(line), file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runway-widget",
        description="Generate Runway videos through APIFRAME, or on the built-in demo backend.",
        epilog="Environment: APIFRAME_API_KEY, APIFRAME_BASE_URL, RUNWAY_WIDGET_POLL_INTERVAL.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate", help="submit a video, wait with a progress bar, save the MP4"
    )
    generate.add_argument("prompt", metavar="PROMPT")
    generate.add_argument(
        "--type", default="text2video", help=f"{' | '.join(GENERATION_TYPES)} (default text2video)"
    )
    generate.add_argument(
        "--image-url", help="first frame (image2video): a URL, or a local image (uploaded for you)"
    )
    generate.add_argument(
        "--end-image-url", help="last frame (image2video): a URL or a local image"
    )
    generate.add_argument("--video-url", help="source video (video2video)")
    generate.add_argument("--aspect-ratio", help=" | ".join(ASPECT_RATIOS) + " (text2video)")
    generate.add_argument("--model", help=" | ".join(MODELS))
    generate.add_argument("--duration", type=int, help=" | ".join(map(str, DURATIONS)) + " s")
    generate.add_argument("--flip", action="store_true", help="flip the video vertically")
    generate.add_argument("--webhook-url", help="the service POSTs updates here")
    generate.add_argument("--webhook-secret", help="sent back as x-webhook-secret")
    _add_out(generate, "default: a name made from the prompt")
    _add_timeout(generate)
    _add_demo_flag(generate)
    generate.set_defaults(run=_generate)

    fetch = commands.add_parser("fetch", help="show (and journal) a task's current state")
    fetch.add_argument("task_id", metavar="TASK_ID")
    fetch.add_argument("--json", action="store_true", help="print the task as JSON")
    _add_demo_flag(fetch)
    fetch.set_defaults(run=_fetch)

    wait = commands.add_parser(
        "wait", help="wait for a task with a progress bar (submitted earlier)"
    )
    wait.add_argument("task_id", metavar="TASK_ID")
    wait.add_argument("--json", action="store_true", help="print the finished task as JSON")
    _add_timeout(wait)
    _add_demo_flag(wait)
    wait.set_defaults(run=_wait)

    download = commands.add_parser("download", help="save a finished task's MP4")
    download.add_argument("task_id", metavar="TASK_ID")
    _add_out(download, "default: a name made from the prompt in the history")
    _add_demo_flag(download)
    download.set_defaults(run=_download)

    cancel = commands.add_parser(
        "cancel", help="withdraw a job waiting in a workshop gateway's queue (quota back)"
    )
    cancel.add_argument("task_id", metavar="TASK_ID")
    cancel.add_argument("--json", action="store_true", help="print the task as JSON")
    cancel.set_defaults(run=_cancel, demo=False)

    account = commands.add_parser("account", help="credits and plan of the API key")
    account.add_argument("--json", action="store_true", help="print the account as JSON")
    _add_demo_flag(account)
    account.set_defaults(run=_account)

    history = commands.add_parser("history", help="jobs submitted from this machine, newest first")
    history.add_argument("--all", action="store_true", help=f"all jobs, not the {RECENT_JOBS} last")
    history.add_argument("--json", action="store_true", help="print the jobs as JSON")
    history.set_defaults(run=_history)

    demo = commands.add_parser("demo-server", help="run the demo backend until Ctrl-C")
    demo.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    demo.add_argument("--job-seconds", type=float, help="how long each demo job takes")
    demo.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="refuse past N running jobs, as a provider does past its plan (429)",
    )
    demo.set_defaults(run=_demo_server)

    from ..gateway.cli import register as register_gateway_commands

    register_gateway_commands(commands)  # gateway serve|token|join|report, and join
    return parser


def _add_out(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--out", metavar="FILE", help=f"where to save the MP4 ({default})")
    parser.add_argument("--force", action="store_true", help="replace the --out file if it exists")


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds to wait (default 900); the job goes on after it",
    )


def _add_demo_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--demo", action="store_true", help="use the built-in demo backend (no API key needed)"
    )


if __name__ == "__main__":
    sys.exit(main())
