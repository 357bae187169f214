import asyncio
import math

import pytest

from node_agent.shaper import TokenBucket

MBIT = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bucket(rate_bps=8 * MBIT, burst_bytes=10_000):
    clock = FakeClock()
    return TokenBucket(rate_bps, burst_bytes, clock), clock


def test_message_within_burst_passes_at_once():
    shaper, _ = bucket()

    position = shaper.meter(10_000)

    assert shaper.paid(position)
    assert shaper.wait_s(position) == 0.0


def test_bucket_refills_at_rate():
    shaper, clock = bucket(rate_bps=8 * MBIT, burst_bytes=10_000)
    shaper.meter(10_000)

    clock.advance(0.001)

    assert shaper.level_bytes == pytest.approx(1_000)


def test_bucket_never_exceeds_burst():
    shaper, clock = bucket(burst_bytes=10_000)

    clock.advance(60)

    assert shaper.level_bytes == 10_000


def test_large_message_passes_and_leaves_debt():
    shaper, clock = bucket(rate_bps=8 * MBIT, burst_bytes=10_000)

    position = shaper.meter(1_010_000)

    assert shaper.level_bytes == -1_000_000
    assert shaper.wait_s(position) == pytest.approx(1.0)
    clock.advance(1.0)
    assert shaper.paid(position)


def test_debt_delays_the_next_message():
    shaper, clock = bucket(rate_bps=8 * MBIT, burst_bytes=10_000)
    shaper.meter(1_010_000)

    small = shaper.meter(100)

    assert shaper.wait_s(small) == pytest.approx(1.0001)
    clock.advance(1.0)
    assert not shaper.paid(small)


def test_average_rate_holds_over_many_messages():
    shaper, clock = bucket(rate_bps=8 * MBIT, burst_bytes=10_000)
    sent_bytes = 0

    while clock.now < 110.0:
        position = shaper.meter(64_000)
        clock.advance(shaper.wait_s(position))
        sent_bytes += 64_000

    rate_bps = (sent_bytes - 10_000) * 8 / (clock.now - 100.0)
    assert rate_bps == pytest.approx(8 * MBIT, rel=0.01)


def test_rate_change_applies_to_unpaid_bytes():
    shaper, clock = bucket(rate_bps=8 * MBIT, burst_bytes=10_000)
    position = shaper.meter(2_010_000)
    clock.advance(1.0)

    shaper.set_rate(16 * MBIT)

    assert shaper.wait_s(position) == pytest.approx(0.5)


def test_zero_rate_stalls_until_the_rate_changes():
    shaper, clock = bucket(rate_bps=8 * MBIT, burst_bytes=10_000)
    shaper.set_rate(0)
    position = shaper.meter(20_000)

    clock.advance(60)

    assert shaper.wait_s(position) == math.inf
    shaper.set_rate(8 * MBIT)
    assert shaper.wait_s(position) == pytest.approx(0.01)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="rate_bps must not be negative, got -1"):
        TokenBucket(-1, 1000)
    with pytest.raises(ValueError, match="burst_bytes must be positive, got 0"):
        TokenBucket(MBIT, 0)


async def test_acquire_wakes_on_rate_increase():
    shaper = TokenBucket(8_000, 1_000)
    shaper.meter(1_000)
    waiter = asyncio.create_task(shaper.acquire(10_000))
    await asyncio.sleep(0.05)

    shaper.set_rate(800 * MBIT)

    await asyncio.wait_for(waiter, 1.0)


async def test_release_lets_waiting_messages_pass():
    shaper = TokenBucket(8_000, 1_000)
    waiter = asyncio.create_task(shaper.acquire(100_000))
    await asyncio.sleep(0.05)

    shaper.release()

    await asyncio.wait_for(waiter, 1.0)
    await asyncio.wait_for(shaper.acquire(100_000), 1.0)
