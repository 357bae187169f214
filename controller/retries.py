"""Retries of transport operations, with their limits in one place.

JetStream operations retry UnavailableError (NATS or JetStream not ready).
Agent commands retry a missing reply (CommandTimeoutError) until the
command's deadline, and a missing agent (NodeOfflineError) for a few seconds,
in case it is reconnecting. Every other error passes through at once.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_fixed,
)

from controller.errors import CommandTimeoutError, NodeOfflineError, UnavailableError

logger = logging.getLogger(__name__)

# A nats-server that has just started responds to JetStream requests only
# after it has loaded its store. The controller waits this long for that.
JETSTREAM_READY_TIMEOUT_S = 15.0
JETSTREAM_RETRY_WAIT_S = 0.5


def until_jetstream_ready(action: str) -> AsyncRetrying:
    """Build a retry controller for one JetStream operation; build one per call."""

    def log_retry(state: RetryCallState) -> None:
        logger.info(
            "%s failed (attempt %d): %s; retrying in %.1f s",
            action,
            state.attempt_number,
            state.outcome.exception(),
            JETSTREAM_RETRY_WAIT_S,
        )

    return AsyncRetrying(
        stop=stop_after_delay(JETSTREAM_READY_TIMEOUT_S),
        wait=wait_fixed(JETSTREAM_RETRY_WAIT_S),
        retry=retry_if_exception_type(UnavailableError),
        before_sleep=log_retry,
        reraise=True,
    )


# A command without a reply is sent again, with the same id, after this long.
COMMAND_RESEND_AFTER_S = 3.0
# After a request that no agent received, the next attempt waits this long,
# doubling up to the max, while the node's agent may be reconnecting.
NO_AGENT_FIRST_WAIT_S = 0.25
NO_AGENT_MAX_WAIT_S = 2.0
# Requests that no agent receives are given up after this long.
NO_AGENT_PATIENCE_S = 3.0
# An attempt needs at least this much time before the deadline to be worth it.
MIN_ATTEMPT_S = 0.05


def until_command_deadline(
    description: str,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncRetrying:
    """Build a retry controller for one agent command; build one per command.

    `deadline` is the command's deadline on `clock` (Unix seconds). The
    caller sends the same command, with the same id, on every attempt, so an
    agent that already ran it returns its first reply instead of acting again.
    """

    started_at = clock()

    def remaining_s() -> float:
        return deadline - clock()

    def wait_s(state: RetryCallState) -> float:
        if not isinstance(state.outcome.exception(), NodeOfflineError):
            return 0.0  # the attempt's own timeout was the wait
        backoff_s = NO_AGENT_FIRST_WAIT_S * 2 ** (state.attempt_number - 1)
        return max(
            0.0, min(backoff_s, NO_AGENT_MAX_WAIT_S, remaining_s() - MIN_ATTEMPT_S)
        )

    def stop(state: RetryCallState) -> bool:
        if remaining_s() < MIN_ATTEMPT_S:
            return True
        # A node whose agent stays away is deferred to the reconciler soon,
        # instead of holding the caller until the deadline.
        no_agent = isinstance(state.outcome.exception(), NodeOfflineError)
        return no_agent and clock() - started_at >= NO_AGENT_PATIENCE_S

    def log_retry(state: RetryCallState) -> None:
        logger.info(
            "%s failed (attempt %d): %s; sending it again in %.2f s",
            description,
            state.attempt_number,
            state.outcome.exception(),
            state.upcoming_sleep,
        )

    return AsyncRetrying(
        stop=stop,
        wait=wait_s,
        sleep=sleep,
        retry=retry_if_exception_type((CommandTimeoutError, NodeOfflineError)),
        before_sleep=log_retry,
        reraise=True,
    )
