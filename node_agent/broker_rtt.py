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
# which is a lower bound.
# NOTE: nats-py cancels the PING's future itself after this wait, so a later
# PONG still stops its read loop. A link that slow is most likely lost already.
MAX_WAIT_S = 10.0


class BrokerRtt:
    """Measures the round trip every `interval_s` while `client()` is connected.

    `last_ms` is the latest round trip in milliseconds, None while offline
    or before the first one.

    nats-py 2.16 keeps the future of each PING in a queue and sets the next
    one when a PONG arrives. A cancelled future there makes its read loop
    fail at the next PONG, and the connection stops reading. So a PING in
    flight is shielded from cancellation, and `settle` waits for it before
    the agent drains the connection.
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
        self._in_flight: asyncio.Future | None = None

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
            self.last_ms = await self._round_trip_s(client) * 1000.0
        except nats.errors.TimeoutError:
            self.last_ms = MAX_WAIT_S * 1000.0
        except nats.errors.Error as exc:
            # The link loop notices a lost connection and reconnects.
            logger.debug("round trip to the NATS server failed: %s", exc)
            self.last_ms = None
        return self.last_ms

    async def settle(self, timeout_s: float = MAX_WAIT_S) -> None:
        """Wait up to `timeout_s` for a PING in flight to get its PONG."""
        if self._in_flight is not None and not self._in_flight.done():
            await asyncio.wait([self._in_flight], timeout=timeout_s)

    async def _round_trip_s(self, client: Client) -> float:
        started = time.monotonic()
        if self._shaper is not None:
            await self._shaper.send(PING_BYTES)
        self._in_flight = asyncio.ensure_future(client.rtt(timeout=MAX_WAIT_S))
        await asyncio.shield(self._in_flight)
        if self._shaper is not None:
            await self._shaper.receive(PING_BYTES)
        return time.monotonic() - started
