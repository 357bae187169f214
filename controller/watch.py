"""The event stream behind `controller watch`."""

import asyncio
import contextlib
from collections.abc import Callable

from controller.client import ApiClient


async def watch_events(
    api: ApiClient,
    show: Callable[[str, dict], None],
    count: int | None = None,
    timeout_s: float | None = None,
) -> int:
    """Pass each event to `show` until `count` events or `timeout_s` seconds.

    Returns the number of events shown; without limits it runs until cancelled.
    """
    shown = 0
    async with api:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for subject, event in api.events():
                    show(subject, event)
                    shown += 1
                    if count is not None and shown >= count:
                        break
    return shown
