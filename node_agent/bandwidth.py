"""The agent's link rate over time, and the shaper that meters both directions.

A rate plan gives each rate and how long it lasts: a fixed rate, a rate drawn
uniformly from a range at a fixed interval, or a bandwidth trace replayed in
a loop. `LinkShaper` follows a plan and meters what the agent sends on the
uplink bucket and what it receives on the downlink bucket. Both buckets run
at the same rate, as on a full-duplex link.
"""

import asyncio
import itertools
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from node_agent.shaper import TokenBucket
from node_agent.traces import RateTrace
from schemas.messages import RateSource

DEFAULT_BURST_BYTES = 64 * 1024
DEFAULT_FLUCTUATE_MIN_BPS = 50e6
DEFAULT_FLUCTUATE_MAX_BPS = 500e6
DEFAULT_FLUCTUATE_INTERVAL_S = 5.0

# A step of a plan: the rate in bits per second and how long it lasts.
Step = tuple[float, float]
RateChanged = Callable[[float | None, float], Awaitable[None]]


@dataclass(frozen=True)
class FixedRate:
    rate_bps: float
    source: RateSource = "fixed"

    def steps(self) -> Iterator[Step]:
        yield self.rate_bps, math.inf


@dataclass(frozen=True)
class FluctuatingRate:
    """A rate drawn uniformly from [min_bps, max_bps] every `interval_s`."""

    min_bps: float
    max_bps: float
    interval_s: float
    seed: int | None = None
    source: RateSource = "fluctuate"

    def __post_init__(self) -> None:
        if not 0 < self.min_bps <= self.max_bps:
            raise ValueError(
                f"invalid rate range {self.min_bps:g} to {self.max_bps:g} bit/s: "
                "the minimum must be above 0 and at most the maximum"
            )
        if self.interval_s <= 0:
            raise ValueError(
                f"invalid fluctuation interval {self.interval_s!r}: use more than 0 s"
            )

    def steps(self) -> Iterator[Step]:
        draws = random.Random(self.seed)
        while True:
            yield draws.uniform(self.min_bps, self.max_bps), self.interval_s


@dataclass(frozen=True)
class TraceRate:
    """A bandwidth trace replayed from its start, in a loop."""

    trace: RateTrace
    source: RateSource = "trace"

    def steps(self) -> Iterator[Step]:
        trace = self.trace
        ends = (*trace.starts_s[1:], trace.length_s)
        durations = [
            end - start for start, end in zip(trace.starts_s, ends, strict=True)
        ]
        return itertools.cycle(zip(trace.rates_bps, durations, strict=True))


RatePlan = FixedRate | FluctuatingRate | TraceRate


class LinkShaper:
    """Meters the agent's messages against a rate that follows a plan.

    `send` and `receive` wait until the uplink or downlink bucket has paid for
    a message. `run` moves through the plan and calls `on_change(previous,
    rate)` at each change of the rate. The first rate applies from
    construction on, and `run` reports it with `previous` None.
    """

    def __init__(
        self,
        plan: RatePlan,
        burst_bytes: int = DEFAULT_BURST_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.burst_bytes = burst_bytes
        self._clock = clock
        self._steps = plan.steps()
        self._first_step = next(self._steps)
        rate_bps = self._first_step[0]
        self.uplink = TokenBucket(rate_bps, burst_bytes, clock)
        self.downlink = TokenBucket(rate_bps, burst_bytes, clock)

    @property
    def rate_bps(self) -> float:
        return self.uplink.rate_bps

    @property
    def source(self) -> RateSource:
        return self.plan.source

    def release(self) -> None:
        """Stop shaping: what waits passes now, so a stopping agent is not held."""
        self.uplink.release()
        self.downlink.release()

    async def send(self, size_bytes: int) -> None:
        await self.uplink.acquire(size_bytes)

    async def receive(self, size_bytes: int) -> None:
        await self.downlink.acquire(size_bytes)

    async def run(self, on_change: RateChanged) -> None:
        """Apply each step of the plan at its time until cancelled."""
        await on_change(None, self.rate_bps)
        change_at = self._clock() + self._first_step[1]
        for rate_bps, duration_s in self._steps:
            await asyncio.sleep(max(0.0, change_at - self._clock()))
            change_at += duration_s
            previous_bps = self.rate_bps
            if rate_bps == previous_bps:
                continue
            self.uplink.set_rate(rate_bps)
            self.downlink.set_rate(rate_bps)
            await on_change(previous_bps, rate_bps)


def describe_rate(rate_bps: float) -> str:
    """Return a rate for people: 20 Mbit/s, 512 kbit/s, 1.5 Gbit/s."""
    for unit, size in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if rate_bps >= size:
            return f"{rate_bps / size:.3g} {unit}"
    return f"{rate_bps:.3g} bit/s"
