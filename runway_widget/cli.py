"""``runway-widget``: generate, follow and list videos from a terminal.

Output contract: status lines and the progress bar go to stderr; stdout carries only
results (the saved path, a task, the account, the history), so the command composes in
scripts. Expected failures print one line and exit non-zero: 2 for a bad command line or
request, 1 for any other failure, 130 for Ctrl-C. Never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import __version__
from .client import UNKNOWN_SUBMISSION_HINT, ApiframeClient
from .errors import ApiframeError, ValidationError
from .models import (
    ASPECT_RATIOS,
    DURATIONS,
    GENERATION_TYPES,
    MODELS,
    GenerationRequest,
    Task,
    video_filename,
)

__all__ = ["DEMO_NOTICE", "main"]

DEMO_NOTICE = "Using the built-in demo backend (no API key needed)"
RECENT_JOBS = 20
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


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
        return args.run(args)
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except ValidationError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except (ApiframeError, CommandError) as exc:
        _say(f"error: {exc}")
        return getattr(exc, "code", EXIT_FAILURE)


# -- commands ------------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
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
    ).validate()
    with _client(args) as client:
        try:
            task_id = client.imagine(request)
        except KeyboardInterrupt:
            raise CommandError(
                f"interrupted during the submission: {UNKNOWN_SUBMISSION_HINT}", EXIT_INTERRUPTED
            ) from None
        _say(f"Submitted task {task_id} (follow it any time: runway-widget fetch {task_id})")
        try:
            task = _wait_with_bar(client, task_id, args.timeout)
        except KeyboardInterrupt:
            _say(f"stopped waiting; task {task_id} goes on: runway-widget fetch {task_id}")
            return EXIT_INTERRUPTED
        path = client.download(task, args.out or video_filename(args.prompt, task_id))
    _say(f"Saved the video of task {task_id}")
    print(path)
    return 0


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
            bar.set_description_str(task.status, refresh=False)
            done = 100 if task.is_finished else task.percentage
            if done is not None and done > bar.n:
                bar.update(done - bar.n)
            else:
                bar.refresh()

        return client.wait(task_id, timeout=timeout, on_progress=show)


def _fetch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        task = client.fetch(args.task_id)
        client.store.record_task(task, backend=client.base_url)
    if args.json:
        print(json.dumps(dict(task.raw), indent=2, ensure_ascii=False))
        return 0
    progress = f" {task.percentage}%" if task.percentage is not None and not task.is_done else ""
    print(f"{task.task_id}: {task.status}{progress}")
    if task.video_url:
        print(f"video: {task.video_url}")
    if task.message:
        print(f"message: {task.message}")
    return 0


def _account(args: argparse.Namespace) -> int:
    with _client(args) as client:
        info = client.account()
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    for name in ("email", "plan", "credits", "total_images"):
        print(f"{name}: {info.get(name, '?')}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from .store import JobStore

    store = JobStore()
    history = store.load()
    jobs = history.jobs if args.all else history.jobs[:RECENT_JOBS]
    if args.json:
        print(json.dumps([dataclasses.asdict(job) for job in jobs], indent=2, ensure_ascii=False))
    elif not history.jobs:
        _say(f"No jobs yet (history: {store.path})")
    for job in [] if args.json else jobs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.submitted_at))
        state = job.status + (
            f" {job.percentage}%" if job.percentage is not None and not job.is_done else ""
        )
        prompt = " ".join((job.prompt or "").split())
        prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        where = job.local_path or job.video_url or job.message or ""
        print(f"{when}  {job.task_id}  {state:<16}  {prompt:<40}  {where}".rstrip())
    hidden = len(history.jobs) - len(jobs)
    if hidden:
        _say(f"{hidden} older job(s) not shown: add --all")
    if history.skipped:
        _say(
            f"{len(history.skipped)} line(s) of {store.path} could not be read: "
            + "; ".join(history.skipped[:3])
        )
    return 0


def _demo_server(args: argparse.Namespace) -> int:
    server = _demo_module().DemoServer(port=args.port, job_seconds=args.job_seconds)
    server.start()
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


# -- plumbing ------------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> ApiframeClient:
    if getattr(args, "demo", False):
        _demo_module()
        _say(DEMO_NOTICE)
        return ApiframeClient.demo()
    client = ApiframeClient()
    if not client.api_key:
        raise CommandError(
            "no API key: set APIFRAME_API_KEY (and APIFRAME_BASE_URL for another backend), "
            "or add --demo to use the built-in demo backend"
        )
    return client


def _demo_module() -> Any:
    try:
        from . import demo
    except ImportError as exc:
        raise CommandError(str(exc) or 'the demo needs: pip install "runway_widget[demo]"') from exc
    return demo


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
    generate.add_argument("--image-url", help="first frame (image2video)")
    generate.add_argument("--end-image-url", help="last frame (image2video)")
    generate.add_argument("--video-url", help="source video (video2video)")
    generate.add_argument("--aspect-ratio", help=" | ".join(ASPECT_RATIOS) + " (text2video)")
    generate.add_argument("--model", help=" | ".join(MODELS))
    generate.add_argument("--duration", type=int, help=" | ".join(map(str, DURATIONS)) + " s")
    generate.add_argument("--flip", action="store_true", help="flip the video vertically")
    generate.add_argument("--webhook-url", help="the service POSTs updates here")
    generate.add_argument("--webhook-secret", help="sent back as x-webhook-secret")
    generate.add_argument("--out", help="where to save the MP4 (default: a name from the prompt)")
    generate.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait (default 900)"
    )
    _add_demo_flag(generate)
    generate.set_defaults(run=_generate)

    fetch = commands.add_parser("fetch", help="show (and journal) a task's current state")
    fetch.add_argument("task_id", metavar="TASK_ID")
    fetch.add_argument("--json", action="store_true", help="print the task as JSON")
    _add_demo_flag(fetch)
    fetch.set_defaults(run=_fetch)

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
    demo.set_defaults(run=_demo_server)

    from .gateway.cli import register as register_gateway_commands

    register_gateway_commands(commands)  # gateway serve|token|join|report, and join
    return parser


def _add_demo_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--demo", action="store_true", help="use the built-in demo backend (no API key needed)"
    )


if __name__ == "__main__":
    sys.exit(main())
