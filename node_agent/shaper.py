"""Token-bucket shaper that meters the bytes of the agent's messages.

The bucket fills at `rate_bps` (bits per second) up to `burst_bytes`. Each
message takes its size from the bucket when it is metered, and may pass once
the bucket has paid for it. A message larger than the burst still passes: it
leaves the bucket in debt, and the messages after it wait until the debt is
repaid, so the average rate over any window of several seconds matches the
configured rate.

Limitations:
- Time comes from an injected monotonic clock (`time.monotonic` by default),
  so tests can drive it without sleeping; it must never go backwards.
- A rate change takes effect for the bytes not yet paid for: a waiter
  re-checks when it wakes, and `set_rate` wakes all waiters so they wait at
  the new rate.
- A rate of 0 stalls the link: waiters sleep until the rate changes. Traces
  have seconds in which nothing is delivered.
- The shaper meters one process; agents on one host do not share a bucket.
- Messages pass in the order they were metered, whatever their size.
"""

import asyncio
import math
import time
from collections.abc import Callable

BITS_PER_BYTE = 8


class TokenBucket:
    """Meters bytes against a rate, with a burst and debt for large messages."""

    def __init__(
        self,
        rate_bps: float,
        burst_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst_bytes <= 0:
            raise ValueError(f"burst_bytes must be positive, got {burst_bytes!r}")
        self._check_rate(rate_bps)
        self.rate_bps = rate_bps
        self.burst_bytes = burst_bytes
        self._clock = clock
        self._updated_at = clock()
        # Cumulative bytes the bucket has earned and bytes metered so far; the
        # bucket contains `earned - spent`, at most `burst_bytes`, below 0 in debt.
        self._earned = float(burst_bytes)
        self._spent = 0.0
        self._waiters: set[asyncio.Future[None]] = set()
        self._released = False

    @property
    def level_bytes(self) -> float:
        """Bytes in the bucket now; negative while in debt."""
        self._refill()
        return self._earned - self._spent

    def set_rate(self, rate_bps: float) -> None:
        """Change the rate from now on; bytes earned so far are kept."""
        self._check_rate(rate_bps)
        self._refill()
        self.rate_bps = rate_bps
        for waiter in self._waiters:
            _wake(waiter)

    def meter(self, size_bytes: int) -> float:
        """Take `size_bytes` from the bucket; return the position to wait for.

        The message may pass once `paid(position)` is true.
        """
        if size_bytes < 0:
            raise ValueError(f"size_bytes must not be negative, got {size_bytes!r}")
        self._refill()
        self._spent += size_bytes
        return self._spent

    def paid(self, position: float) -> bool:
        self._refill()
        return self._earned >= position

    def wait_s(self, position: float) -> float:
        """Seconds until `position` is paid at the current rate; 0 if it is."""
        self._refill()
        missing_bytes = position - self._earned
        if missing_bytes <= 0:
            return 0.0
        if self.rate_bps == 0:
            return math.inf
        return missing_bytes * BITS_PER_BYTE / self.rate_bps

    def release(self) -> None:
        """Let every message pass at once from now on, including those waiting."""
        self._released = True
        for waiter in self._waiters:
            _wake(waiter)

    async def acquire(self, size_bytes: int) -> None:
        """Meter `size_bytes` and sleep until the bucket has paid for them."""
        position = self.meter(size_bytes)
        loop = asyncio.get_running_loop()
        while not self._released and (delay_s := self.wait_s(position)) > 0:
            # A future and a timer cost less than a task per waiting message;
            # set_rate ends the wait early, so the rest is waited at the new rate.
            waiter = loop.create_future()
            timer = None
            if not math.isinf(delay_s):
                timer = loop.call_later(delay_s, _wake, waiter)
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)
                if timer is not None:
                    timer.cancel()

    def _refill(self) -> None:
        now = self._clock()
        elapsed_s = max(0.0, now - self._updated_at)
        self._updated_at = now
        earned = self._earned + elapsed_s * self.rate_bps / BITS_PER_BYTE
        self._earned = min(earned, self._spent + self.burst_bytes)

    @staticmethod
    def _check_rate(rate_bps: float) -> None:
        if rate_bps < 0:
            raise ValueError(f"rate_bps must not be negative, got {rate_bps!r}")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
