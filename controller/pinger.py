"""Round-trip times of the nodes: a ping command to each online node, periodically."""

import asyncio
import logging
import time
from collections.abc import Callable

from controller.agents import AgentClient
from controller.errors import CommandTimeoutError, ControllerError
from controller.registry import NodeRegistry
from schemas.messages import Ping

logger = logging.getLogger(__name__)

DEFAULT_PING_INTERVAL_S = 5.0
# A ping waits at most this long for its reply, and never longer than the
# interval, so a silent node delays the next round by at most this long.
MAX_PING_WAIT_S = 2.0


class Pinger:
    """Pings every online node each `interval_s` and records the round trip."""

    def __init__(
        self,
        agents: AgentClient,
        registry: NodeRegistry,
        interval_s: float = DEFAULT_PING_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._agents = agents
        self._registry = registry
        self.interval_s = interval_s
        self._clock = clock

    async def run(self) -> None:
        while True:
            await self.ping_all()
            await asyncio.sleep(self.interval_s)

    async def ping_all(self) -> None:
        nodes = [node.name for node in self._registry.online()]
        await asyncio.gather(*(self.ping(node) for node in nodes))

    async def ping(self, node: str) -> float | None:
        """Ping one node; record and return the round trip in ms, None on failure."""
        started = self._clock()
        sent_at = self._registry.clock()
        try:
            await self._agents.call(
                node, Ping, bound_s=min(MAX_PING_WAIT_S, self.interval_s)
            )
        except CommandTimeoutError:
            logger.debug("node %s: no reply to a ping", node)
            self._registry.ping_unanswered(node, sent_at)
            return None
        except ControllerError as exc:
            logger.debug("node %s: ping failed: %s", node, exc)
            return None
        rtt_ms = (self._clock() - started) * 1000.0
        self._registry.record_rtt(node, rtt_ms)
        logger.debug("node %s: round trip %.1f ms", node, rtt_ms)
        return rtt_ms
