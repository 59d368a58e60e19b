"""Reading tasks: ``/fetch`` for one id, ``/fetch-many`` for up to 20.

Kept apart from the client so its one subtle part reads on its own: a server refuses a
whole batch when one id in it is unknown, so a refused batch is split in halves until
the unknown ids are isolated, and one bad id never costs the others' results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import TaskNotFoundError
from ..models import FETCH_MANY_LIMIT, Task
from .calls import ApiCalls

__all__ = ["BatchFetcher"]


class BatchFetcher:
    """The task reads of one client, made through its `ApiCalls`.

    ``retry=True`` reads take a token from the client's budget and retry; ``retry=False``
    ones make exactly one attempt (a scheduler that paces itself has taken the token).
    Both requests raise `TaskNotFoundError` when the server does not know an id.
    """

    def __init__(self, api: ApiCalls) -> None:
        self._api = api

    def one(self, task_id: str, *, retry: bool = True, deadline: float | None = None) -> Task:
        """``/fetch``: the task's current state (``deadline`` seconds at most when given)."""
        return self._read("/fetch", {"task_id": task_id}, Task.from_json, [task_id], retry,
                          deadline=deadline)

    def batch(self, ids: list[str], *, retry: bool = True) -> dict[str, Task]:
        """At most 20 ids in one logical call: only the tasks the server returned.

        ``retry=False`` makes exactly one attempt and never splits (nothing is returned for
        a refused batch, so the caller checks each id alone).
        """
        unique = list(dict.fromkeys(ids))
        if len(unique) > FETCH_MANY_LIMIT:
            raise ValueError(f"fetch_batch takes at most {FETCH_MANY_LIMIT} ids, not {len(unique)}")
        if not unique:
            return {}
        if len(unique) == 1:
            try:
                return {unique[0]: self.one(unique[0], retry=retry)}
            except TaskNotFoundError:
                return {}
        try:
            tasks = self._read("/fetch-many", {"task_ids": unique}, _parse_tasks, unique, retry)
        except TaskNotFoundError:
            if not retry:
                return {}
            middle = len(unique) // 2
            return {**self.batch(unique[:middle]), **self.batch(unique[middle:])}
        wanted = set(unique)
        return {task.task_id: task for task in tasks if task.task_id in wanted}

    def many(self, ids: Iterable[str]) -> list[Task]:
        """Any number of tasks in the order asked; an unknown one as `Task.unknown`."""
        ids = list(ids)
        found: dict[str, Task] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), FETCH_MANY_LIMIT):
            found.update(self.batch(chunk))
            for task_id in chunk:
                if task_id not in found:
                    found[task_id] = self._one_or_unknown(task_id)
        return [found[task_id] for task_id in ids]

    def _one_or_unknown(self, task_id: str) -> Task:
        try:
            return self.one(task_id)
        except TaskNotFoundError:
            return Task.unknown(task_id)

    def _read(self, path: str, payload: dict[str, Any], parse: Callable[[Any], Any],
              ids: list[str], retry: bool, *, deadline: float | None = None) -> Any:
        return self._api.call(
            "POST",
            path,
            parse=parse,
            json=payload,
            take_token=retry,
            policy="read" if retry else "once",
            task_ids=ids,
            deadline=deadline,
        )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _parse_tasks(data: Any) -> list[Task]:
    tasks = data["tasks"]
    if not isinstance(tasks, list):
        raise TypeError("tasks")
    return [Task.from_json(item) for item in tasks]
