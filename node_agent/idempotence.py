"""The cache of recent replies that makes a repeated command act only once."""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from schemas.messages import Reply

DEFAULT_MAX_ENTRIES = 1024
DEFAULT_TTL_S = 600.0


class ReplyCache:
    """Replies of recent commands by command id, bounded in count and age.

    The first command with an id runs. A command with the same id that
    arrives while it runs waits for its reply, and one that arrives later
    gets the stored reply. An entry leaves the cache after `ttl_s` seconds,
    or earlier when more than `max_entries` ids are stored. An id repeated
    after that acts again.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, asyncio.Future[Reply]]] = (
            OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, command_id: str) -> bool:
        self._evict()
        return command_id in self._entries

    async def run(self, command_id: str, act: Callable[[], Awaitable[Reply]]) -> Reply:
        """Return the reply stored for `command_id`, or run `act` and store its reply."""
        self._evict()
        entry = self._entries.get(command_id)
        if entry is not None:
            return await asyncio.shield(entry[1])
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._entries[command_id] = (self._clock(), future)
        self._evict()
        try:
            reply = await act()
        except BaseException as exc:
            # A command that raised has no reply to repeat, so a retry may act.
            self._entries.pop(command_id, None)
            self._fail(future, exc)
            raise
        future.set_result(reply)

        return reply

    @staticmethod
    def _fail(future: asyncio.Future[Reply], exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
            return
        future.set_exception(exc)
        future.exception()  # marks it retrieved when no duplicate waits on it

    def _evict(self) -> None:
        expired_before = self._clock() - self.ttl_s
        while self._entries:
            command_id, (stored_at, _) = next(iter(self._entries.items()))
            if stored_at >= expired_before and len(self._entries) <= self.max_entries:
                break
            del self._entries[command_id]
