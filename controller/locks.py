"""Per-job locks, so the API and the reconciler never act on one job at once.

NOTE: the locks are held in this process only. Two controllers serving the
same prefix coordinate through the store's atomic writes, not through these.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator


class JobLocks:
    """One asyncio.Lock per job name, dropped when no task holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def busy(self, job: str) -> bool:
        return job in self._locks

    @contextlib.asynccontextmanager
    async def hold(self, job: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(job, asyncio.Lock())
        self._users[job] = self._users.get(job, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[job] -= 1
            if self._users[job] == 0:
                del self._users[job]
                del self._locks[job]
