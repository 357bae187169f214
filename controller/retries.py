"""Retries of transport operations, with their limits in one place.

Only UnavailableError (NATS or JetStream not ready) is retried; every other
error passes through at once.
"""

import logging

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_fixed,
)

from controller.errors import UnavailableError

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
