"""Fetching tasks in batches: ``/fetch-many`` for up to 20 ids, ``/fetch`` for one.

Kept apart from the client so its one subtle part reads on its own: a server refuses a
whole batch when one id in it is unknown, so a refused batch is split in halves until
the unknown ids are isolated, and one bad id never costs the others' results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .errors import TaskNotFoundError
from .models import FETCH_MANY_LIMIT, Task

__all__ = ["BatchFetcher"]

FetchOne = Callable[[str, bool], Task]
FetchMany = Callable[[list[str], bool], list[Task]]


class BatchFetcher:
    """Batch reads over two requests: ``fetch_one(id, retry)``, ``fetch_many(ids, retry)``.

    Both raise `TaskNotFoundError` when the server does not know an id they were given.
    """

    def __init__(self, fetch_one: FetchOne, fetch_many: FetchMany) -> None:
        self._fetch_one = fetch_one
        self._fetch_many = fetch_many

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
                return {unique[0]: self._fetch_one(unique[0], retry)}
            except TaskNotFoundError:
                return {}
        try:
            tasks = self._fetch_many(unique, retry)
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
            return self._fetch_one(task_id, True)
        except TaskNotFoundError:
            return Task.unknown(task_id)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
