"""Per-job retry delays after failures, so a failing job is retried slowly and
its failure is logged once rather than on every reconcile pass."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0


@dataclass
class _Failures:
    count: int
    retry_at: float


class Backoff:
    """Doubling delays per job, from FIRST_DELAY_S up to MAX_DELAY_S."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, _Failures] = {}

    def ready(self, job: str) -> bool:
        failures = self._failures.get(job)
        return failures is None or self._clock() >= failures.retry_at

    def failed(self, job: str, error: Exception) -> float:
        """Record a failure and return the delay before the next attempt."""
        failures = self._failures.get(job)
        count = failures.count + 1 if failures else 1
        delay_s = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (count - 1))
        self._failures[job] = _Failures(count, self._clock() + delay_s)
        if count == 1:
            logger.warning("job %s: %s; retrying with backoff", job, error)
        else:
            logger.debug("job %s failed %d times: %s", job, count, error)
        return delay_s

    def succeeded(self, job: str) -> None:
        failures = self._failures.pop(job, None)
        if failures is not None:
            logger.info("job %s recovered after %d failures", job, failures.count)

    def forget(self, job: str) -> None:
        self._failures.pop(job, None)
