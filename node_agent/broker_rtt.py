"""The round trip from the agent to its NATS server, through the shaped link.

A NATS PING and its PONG measure it. When the agent shapes its link, the
PING waits for the uplink and the PONG for the downlink like any other
message, so the round trip grows with the queue of a slow link.
"""

import asyncio
import logging
import time
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client

from node_agent.bandwidth import LinkShaper

logger = logging.getLogger(__name__)

# Size of a NATS PING or PONG line with its CRLF.
PING_BYTES = len(b"PING\r\n")
# A round trip still unanswered after this long is reported as this long,
# a lower bound.
MAX_WAIT_S = 10.0


async def round_trip_s(
    client: Client, shaper: LinkShaper | None, timeout_s: float = MAX_WAIT_S
) -> float:
    """Return one round trip in seconds; raise nats.errors.TimeoutError past `timeout_s`."""
    started = time.monotonic()
    if shaper is not None:
        await shaper.send(PING_BYTES)
    await client.rtt(timeout=timeout_s)
    if shaper is not None:
        await shaper.receive(PING_BYTES)
    return time.monotonic() - started


class BrokerRtt:
    """Measures the round trip every `interval_s` while `client()` is connected.

    `last_ms` is the latest round trip in milliseconds, None while offline
    or before the first one.
    """

    def __init__(
        self,
        client: Callable[[], Client | None],
        shaper: LinkShaper | None,
        interval_s: float,
    ) -> None:
        self._client = client
        self._shaper = shaper
        self.interval_s = interval_s
        self.last_ms: float | None = None

    async def run(self) -> None:
        while True:
            await self.measure()
            await asyncio.sleep(self.interval_s)

    async def measure(self) -> float | None:
        client = self._client()
        if client is None or not client.is_connected:
            self.last_ms = None
            return None
        try:
            self.last_ms = await round_trip_s(client, self._shaper) * 1000.0
        except nats.errors.TimeoutError:
            self.last_ms = MAX_WAIT_S * 1000.0
        except nats.errors.Error as exc:
            # The link loop notices a lost connection and reconnects.
            logger.debug("round trip to the NATS server failed: %s", exc)
            self.last_ms = None
        return self.last_ms
