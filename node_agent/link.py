"""Link emulation settings: disconnect cycles, the reconnect policy, the offline buffer.

A cycle keeps the agent connected for `disconnect_s` seconds, then offline
for `reconnect_s` seconds, and repeats. Offline means the NATS connection is
closed: no command reaches the agent and it publishes nothing. Reconnecting,
after a planned offline window or a real loss of the broker, retries with
exponential backoff and jitter up to `reconnect_max_wait_s` between attempts.
"""

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

import tenacity

from node_agent.errors import AgentError

logger = logging.getLogger(__name__)

DEFAULT_DISCONNECT_S = 30.0
DEFAULT_RECONNECT_S = 20.0
DEFAULT_RECONNECT_MAX_WAIT_S = 10.0
DEFAULT_EVENT_BUFFER = 1000
FIRST_RECONNECT_WAIT_S = 0.25
# How long a returning agent waits for another agent to claim its node id.
# NATS reports at once that no client subscribes, so this costs time only
# when a monitor subscribes to the command subject.
RECONNECT_NODE_CHECK_TIMEOUT_S = 0.25
RECONNECT_JITTER_S = 0.25

DisconnectMode = Literal["announced", "abrupt"]


@dataclass(frozen=True)
class LinkSettings:
    """Link behaviour of the agent; cycles are off when `disconnect_s` <= 0."""

    disconnect_s: float = DEFAULT_DISCONNECT_S
    reconnect_s: float = DEFAULT_RECONNECT_S
    mode: DisconnectMode = "announced"
    reconnect_max_wait_s: float = DEFAULT_RECONNECT_MAX_WAIT_S
    event_buffer: int = DEFAULT_EVENT_BUFFER

    def __post_init__(self) -> None:
        if self.cycles and self.reconnect_s < 0:
            raise ValueError(
                f"invalid offline window {self.reconnect_s!r}: use 0 s or more"
            )
        if self.reconnect_max_wait_s <= 0:
            raise ValueError(
                f"invalid reconnect wait cap {self.reconnect_max_wait_s!r}: "
                "use more than 0 s"
            )
        if self.event_buffer < 1:
            raise ValueError(
                f"invalid event buffer size {self.event_buffer!r}: use 1 or more"
            )

    @property
    def cycles(self) -> bool:
        return self.disconnect_s > 0

    def describe(self) -> str:
        if not self.cycles:
            return "disconnect cycles off"
        return (
            f"disconnect cycles on: connected {self.disconnect_s:g} s, offline "
            f"{self.reconnect_s:g} s, {self.mode}; pass --disconnect 0 to turn "
            "them off"
        )


def reconnect_retrying(
    max_wait_s: float, node: str, url: str
) -> tenacity.AsyncRetrying:
    """Retry a failed connect forever: exponential backoff with jitter, capped.

    The waits grow from FIRST_RECONNECT_WAIT_S, doubling, with up to
    RECONNECT_JITTER_S of random jitter, and never exceed `max_wait_s`. Every
    failed attempt is logged with the wait before the next one.
    """

    def log_attempt(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.reason if isinstance(exc, AgentError) else repr(exc)
        wait_s = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "node %s: reconnect attempt %d to %s failed: %s; next attempt in %.2f s",
            node,
            state.attempt_number,
            url,
            reason,
            wait_s,
        )

    return tenacity.AsyncRetrying(
        wait=tenacity.wait_exponential_jitter(
            multiplier=FIRST_RECONNECT_WAIT_S,
            max=max_wait_s,
            jitter=RECONNECT_JITTER_S,
        ),
        retry=tenacity.retry_if_exception(_worth_retrying),
        before_sleep=log_attempt,
        reraise=True,
    )


def _worth_retrying(exc: BaseException) -> bool:
    """Return whether another connect may succeed: not when the node id is taken."""
    if isinstance(exc, AgentError):
        return exc.code != "conflict"
    return isinstance(exc, Exception)


class OfflineBuffer:
    """Messages held while offline, at most `size`; the oldest are dropped first."""

    def __init__(self, size: int = DEFAULT_EVENT_BUFFER) -> None:
        self._messages: deque[tuple[str, bytes]] = deque(maxlen=size)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._messages)

    def add(self, subject: str, data: bytes) -> None:
        if len(self._messages) == self._messages.maxlen:
            self.dropped += 1
        self._messages.append((subject, data))

    def take(self) -> tuple[list[tuple[str, bytes]], int]:
        """Return the held messages, oldest first, and the dropped count; reset both."""
        messages, dropped = list(self._messages), self.dropped
        self._messages.clear()
        self.dropped = 0
        return messages, dropped


def clock_time(monotonic_s: float) -> float:
    """Turn a time.monotonic() reading into Unix seconds."""
    return time.time() + monotonic_s - time.monotonic()


def local_time(unix_s: float) -> str:
    """Return Unix seconds as local time of day, e.g. 17:40:12."""
    return time.strftime("%H:%M:%S", time.localtime(unix_s))
