"""The job history: a JSON Lines journal so that no paid task_id is ever lost.

Each line is one self-contained record, ``{"v": 1, "kind": ..., "task_id": ..., ...}``:

- ``submitted``: backend, the public request (never a secret) and the submission time;
  written and fsync'd before the caller of ``imagine`` sees the task_id. ``demo: true`` marks
  a job of the embedded demo backend, whose address changes with every kernel.
- ``status``: only what changed since the last record for that task (status, percentage,
  video_url, message), with a time ``at``.
- ``download``: where the finished video was saved (``local_path``), with ``at``.

Appending is one ``os.write`` of the whole line to a descriptor opened with ``O_APPEND``,
under a ``filelock`` lock, so two kernels writing at once never interleave a record.
Reading folds the records per task (latest values win) and reports, rather than drops,
every line it cannot use: a torn last line after a crash, garbage, an unknown kind.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock
import platformdirs

from .models import (
    TERMINAL_STATUSES,
    GenerationRequest,
    Task,
    finite_number,
    parse_percentage,
)

__all__ = ["SCHEMA_VERSION", "JobHistory", "JobRecord", "JobStore", "default_path"]

SCHEMA_VERSION = 1
FILE_NAME = "jobs.jsonl"
_KINDS = ("submitted", "status", "download")
_STATUS_FIELDS = ("status", "percentage", "video_url", "message")
_SECRET_MARKERS = ("secret", "apikey", "authorization", "password", "token")
_LOCK_TIMEOUT = 10.0

_LATEST_TIME = 253402300799.0  # 9999-12-31: any later "time" is damage, not a date

logger = logging.getLogger("runway_widget.store")


def default_path() -> Path:
    """``$RUNWAY_WIDGET_HOME/jobs.jsonl``, else the per-user data directory."""
    home = os.environ.get("RUNWAY_WIDGET_HOME")
    folder = Path(home).expanduser() if home else Path(platformdirs.user_data_dir("runway_widget"))
    return folder / FILE_NAME


def _is_secret_key(key: object) -> bool:
    name = str(key).lower().replace("_", "").replace("-", "")
    return any(marker in name for marker in _SECRET_MARKERS)


def _scrub(request: Mapping[str, Any]) -> dict[str, Any]:
    """Drop anything that looks like a credential, whatever the caller handed in."""
    return {str(k): v for k, v in request.items() if not _is_secret_key(k)}


@dataclass
class JobRecord:
    """Everything known about one task, folded from its journal records."""

    task_id: str
    backend: str | None = None
    request: dict[str, Any] = field(default_factory=dict)
    submitted_at: float = 0.0
    updated_at: float = 0.0
    status: str = "submitted"
    percentage: int | None = None
    video_url: str | None = None
    message: str | None = None
    local_path: str | None = None
    demo: bool = False

    @property
    def is_done(self) -> bool:
        """Terminal (finished or failed): nothing left to poll for."""
        return self.status in TERMINAL_STATUSES

    @property
    def prompt(self) -> str | None:
        value = self.request.get("prompt")
        return value if isinstance(value, str) else None


@dataclass
class JobHistory:
    """What `JobStore.load` found: jobs newest first, and every line it had to skip."""

    jobs: list[JobRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class JobStore:
    """Append-only journal of submitted jobs, safe for threads and for several processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self._lock = threading.Lock()
        self._file_lock = filelock.FileLock(str(self.path) + ".lock", timeout=_LOCK_TIMEOUT)
        self._last: dict[str, tuple[Any, ...]] = {}
        self._backends: dict[str, str | None] = {}
        self.write_error: str | None = None
        self.failed_writes = 0

    @property
    def write_failed(self) -> bool:
        """True once a record could not be written: jobs since then may be missing from it."""
        return self.failed_writes > 0

    def __repr__(self) -> str:
        return f"JobStore({str(self.path)!r})"

    @property
    def folder(self) -> Path:
        """The history's folder, where kept demo clips and posters live too."""
        return self.path.parent

    # -- writing -----------------------------------------------------------------------------

    def record_submission(
        self,
        task_id: str,
        request: GenerationRequest | Mapping[str, Any],
        backend: str,
        *,
        demo: bool = False,
    ) -> None:
        """Journal a new paid task durably (fsync'd) before the caller goes on.

        Never raises for a file problem: the task exists and its id must reach the user, so
        a failed write is logged (with the task_id) instead.
        """
        payload = (
            request.public_payload() if isinstance(request, GenerationRequest) else dict(request)
        )
        record: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "kind": "submitted",
            "task_id": task_id,
            "backend": backend,
            "request": _scrub(payload),
            "submitted_at": time.time(),
        }
        if demo:
            record["demo"] = True
        with self._lock:
            if self._append(record, durable=True, what=f"task {task_id}"):
                self._backends[task_id] = backend

    def record_task(self, task: Task, backend: str | None = None) -> None:
        """Journal what changed in a task since this process last wrote it; cheap to call often.

        Running states are not fsync'd (the next poll rewrites them); terminal ones are.
        """
        state = (task.status, task.percentage, task.video_url, task.message)
        with self._lock:
            previous = self._last.get(task.task_id)
            if previous == state:
                return
            record: dict[str, Any] = {
                "v": SCHEMA_VERSION,
                "kind": "status",
                "task_id": task.task_id,
            }
            if backend is not None and self._backends.get(task.task_id) != backend:
                record["backend"] = backend
            for name, old, new in zip(_STATUS_FIELDS, previous or (None,) * 4, state, strict=True):
                if new != old:
                    record[name] = new
            record["at"] = time.time()
            if self._append(record, durable=task.is_done, what=f"status of task {task.task_id}"):
                self._last[task.task_id] = state
                if backend is not None:
                    self._backends[task.task_id] = backend

    def record_download(self, task_id: str, path: str | os.PathLike[str]) -> None:
        """Journal where a finished video was saved, so it plays again after a restart."""
        record = {
            "v": SCHEMA_VERSION,
            "kind": "download",
            "task_id": task_id,
            "local_path": os.fspath(Path(path).expanduser().resolve()),
            "at": time.time(),
        }
        with self._lock:
            self._append(record, durable=True, what=f"download of task {task_id}")

    def _append(self, record: dict[str, Any], *, durable: bool, what: str) -> bool:
        """Write one whole line with a single O_APPEND write; never raise on failure.

        A failure is logged and kept in `write_error` / `failed_writes`, so a view or the
        command line can say that the history is not being kept (the package's logger is
        silent unless configured).
        """
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            # A lone surrogate (valid JSON from a server) becomes its JSON escape: exact, UTF-8.
            self._write_line(line.encode("utf-8", "backslashreplace"), durable=durable)
        except OSError as exc:
            logger.error("could not save %s to the job history %s: %s", what, self.path, exc)
            self.failed_writes += 1
            self.write_error = (
                f"the job history {self.path} cannot be written ({exc.strerror or exc}): "
                f"{what} is not recorded"
            )
            return False
        return True

    def _write_line(self, data: bytes, *, durable: bool) -> None:
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._file_lock:
                self._write_locked(data, durable=durable)
        except filelock.Timeout:
            logger.warning(
                "job history lock %s is held too long; writing without it",
                self._file_lock.lock_file,
            )
            self._write_locked(data, durable=durable)
        if created and durable:
            _fsync_directory(self.path.parent)

    def _write_locked(self, data: bytes, *, durable: bool) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size:
                # A crash mid-write leaves a line without its newline: start a fresh line so
                # this record is not glued onto the torn one and lost with it.
                os.lseek(fd, size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":
                    data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    # -- reading -----------------------------------------------------------------------------

    def load(self) -> JobHistory:
        """Every job in the journal, newest first; unusable lines are listed in ``skipped``."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return JobHistory()
        except OSError as exc:
            logger.warning("could not read the job history %s: %s", self.path, exc)
            return JobHistory(skipped=[f"{self.path}: could not be read ({exc})"])
        history = _fold(data)
        if history.skipped:
            logger.warning(
                "job history %s: %d line(s) could not be read: %s",
                self.path,
                len(history.skipped),
                "; ".join(history.skipped[:5]),
            )
        with self._lock:
            for job in history.jobs:
                self._last.setdefault(
                    job.task_id, (job.status, job.percentage, job.video_url, job.message)
                )
                self._backends.setdefault(job.task_id, job.backend)
        return history

    def jobs(self, backend: str | None = None) -> list[JobRecord]:
        """Jobs newest first, optionally only those submitted to one backend (base URL)."""
        jobs = self.load().jobs
        if backend is None:
            return jobs
        wanted = backend.rstrip("/")
        return [job for job in jobs if (job.backend or "").rstrip("/") == wanted]

    def get(self, task_id: str) -> JobRecord | None:
        return next((job for job in self.load().jobs if job.task_id == task_id), None)


def _fsync_directory(folder: Path) -> None:
    """Make a newly created journal's directory entry durable too (POSIX only)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fold(data: bytes) -> JobHistory:
    lines = data.split(b"\n")
    records: dict[str, JobRecord] = {}
    order: dict[str, int] = {}
    skipped: list[str] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        entry = _parse_line(raw)
        if isinstance(entry, str):
            if entry == "not valid JSON" and raw.lstrip().startswith(b"{"):
                entry = "not valid JSON, cut short (torn write?)"
            skipped.append(f"line {number}: {entry}")
            continue
        task_id = entry["task_id"]
        job = records.get(task_id)
        if job is None:
            moment = _as_time(entry.get("submitted_at")) or _as_time(entry.get("at")) or 0.0
            job = records[task_id] = JobRecord(task_id, submitted_at=moment, updated_at=moment)
            order[task_id] = number
        _apply(job, entry)
    jobs = sorted(records.values(), key=lambda j: (j.submitted_at, order[j.task_id]), reverse=True)
    return JobHistory(jobs=jobs, skipped=skipped)


def _parse_line(raw: bytes) -> dict[str, Any] | str:
    """One journal line as a record, or (a string) why it cannot be used.

    Fields a newer version added are ignored; a kind it added is reported.
    """
    try:
        entry = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "not valid UTF-8"
    except (ValueError, RecursionError):
        return "not valid JSON"
    if not isinstance(entry, dict):
        return "not a JSON object"
    task_id = entry.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        return "no task_id"
    if entry.get("kind") not in _KINDS:
        return f"unknown record kind {str(entry.get('kind'))[:40]!r} (from a newer version?)"
    return entry


def _apply(job: JobRecord, entry: dict[str, Any]) -> None:
    """Fold one record into a job: fields present (and well-typed) win."""
    kind = entry["kind"]
    moment = _as_time(entry.get("submitted_at" if kind == "submitted" else "at"))
    backend = entry.get("backend")
    if isinstance(backend, str) and (kind == "submitted" or job.backend is None):
        job.backend = backend
    if kind == "submitted":
        if isinstance(entry.get("request"), dict):
            job.request = _scrub(entry["request"])
        if moment is not None:
            job.submitted_at = moment
        job.demo = entry.get("demo") is True
    elif kind == "status":
        if isinstance(entry.get("status"), str) and entry["status"]:
            job.status = entry["status"]
        if "percentage" in entry:
            job.percentage = parse_percentage(entry["percentage"])
        for name in ("video_url", "message"):
            if name in entry and (entry[name] is None or isinstance(entry[name], str)):
                setattr(job, name, entry[name] or None)
    elif isinstance(entry.get("local_path"), str) and entry["local_path"]:
        job.local_path = entry["local_path"]
    if moment is not None:
        job.updated_at = max(job.updated_at, moment)


def _as_time(value: Any) -> float | None:
    """Epoch seconds from a journal field; None when absent, not a number or absurd."""
    if not isinstance(value, (int, float)):
        return None
    return finite_number(value, 0.0, _LATEST_TIME)
