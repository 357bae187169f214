"""Rate plans, the link shaper's rate changes and the reconnect policy."""

import asyncio
import itertools
import math

import pytest
import tenacity

from node_agent.bandwidth import (
    FixedRate,
    FluctuatingRate,
    LinkShaper,
    TraceRate,
    describe_rate,
)
from node_agent.errors import AgentError
from node_agent.link import (
    FIRST_RECONNECT_WAIT_S,
    RECONNECT_JITTER_S,
    LinkSettings,
    OfflineBuffer,
    reconnect_retrying,
)
from node_agent.traces import RateTrace

MBIT = 1e6


def first_steps(plan, count: int) -> list[tuple[float, float]]:
    return list(itertools.islice(plan.steps(), count))


def test_fixed_rate_is_one_endless_step():
    assert list(FixedRate(20 * MBIT).steps()) == [(20 * MBIT, math.inf)]


def test_seeded_draws_repeat_and_stay_in_range():
    plan = FluctuatingRate(50 * MBIT, 500 * MBIT, 5.0, seed=7)

    steps = first_steps(plan, 50)

    assert steps == first_steps(FluctuatingRate(50 * MBIT, 500 * MBIT, 5.0, 7), 50)
    assert steps != first_steps(FluctuatingRate(50 * MBIT, 500 * MBIT, 5.0, 8), 50)
    assert all(50 * MBIT <= rate <= 500 * MBIT for rate, _ in steps)
    assert {duration for _, duration in steps} == {5.0}


def test_draws_cover_the_range_evenly():
    rates = [rate for rate, _ in first_steps(FluctuatingRate(0.1, 1.1, 1.0, 1), 4000)]

    below_middle = sum(rate < 0.6 for rate in rates)

    assert below_middle == pytest.approx(2000, rel=0.1)


@pytest.mark.parametrize(
    ("low", "high", "interval", "message"),
    [
        (500 * MBIT, 50 * MBIT, 5.0, "minimum must be above 0 and at most"),
        (0, 50 * MBIT, 5.0, "minimum must be above 0"),
        (50 * MBIT, 500 * MBIT, 0, "use more than 0 s"),
    ],
)
def test_invalid_fluctuation_is_rejected(low, high, interval, message):
    with pytest.raises(ValueError, match=message):
        FluctuatingRate(low, high, interval)


def test_trace_steps_loop_with_their_durations():
    trace = RateTrace((0.0, 1.0, 3.0), (10 * MBIT, 0.0, 5 * MBIT), 4.0)

    steps = first_steps(TraceRate(trace), 6)

    assert steps == [
        (10 * MBIT, 1.0),
        (0.0, 2.0),
        (5 * MBIT, 1.0),
        (10 * MBIT, 1.0),
        (0.0, 2.0),
        (5 * MBIT, 1.0),
    ]


async def test_shaper_reports_each_change_of_rate():
    trace = RateTrace((0.0, 0.05, 0.1, 0.15), (8e6, 8e6, 16e6, 4e6), 0.2)
    shaper = LinkShaper(TraceRate(trace), burst_bytes=1000)
    changes: list[tuple[float | None, float]] = []

    async def on_change(previous, rate):
        changes.append((previous, rate))

    task = asyncio.create_task(shaper.run(on_change))
    await asyncio.sleep(0.33)
    task.cancel()

    # The equal steps at 0 and 0.05 s are one rate; after 0.2 s the trace loops.
    assert changes[:5] == [
        (None, 8e6),
        (8e6, 16e6),
        (16e6, 4e6),
        (4e6, 8e6),
        (8e6, 16e6),
    ]
    assert shaper.uplink.rate_bps == shaper.downlink.rate_bps


async def test_fixed_shaper_reports_its_rate_once():
    shaper = LinkShaper(FixedRate(8e6))
    changes = []

    async def on_change(previous, rate):
        changes.append((previous, rate))

    await asyncio.wait_for(shaper.run(on_change), 1)

    assert changes == [(None, 8e6)]


async def test_uplink_and_downlink_are_metered_apart():
    shaper = LinkShaper(FixedRate(8_000), burst_bytes=1_000)

    await asyncio.wait_for(shaper.send(1_000), 0.5)
    await asyncio.wait_for(shaper.receive(1_000), 0.5)

    assert shaper.uplink.level_bytes < 100
    assert shaper.downlink.level_bytes < 100


@pytest.mark.parametrize(
    ("rate", "text"),
    [(20e6, "20 Mbit/s"), (512e3, "512 kbit/s"), (1.5e9, "1.5 Gbit/s"), (8, "8 bit/s")],
)
def test_rates_read_well(rate, text):
    assert describe_rate(rate) == text


def reconnect_waits(cap_s: float, attempts: int) -> list[float]:
    retrying = reconnect_retrying(cap_s, "atlas-01", "nats://127.0.0.1:4222")
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    waits = []
    for number in range(1, attempts + 1):
        state.attempt_number = number
        waits.append(retrying.wait(state))
    return waits


def test_reconnect_waits_grow_to_cap():
    waits = reconnect_waits(cap_s=10.0, attempts=12)

    for number, wait_s in enumerate(waits[:5], start=1):
        base_s = FIRST_RECONNECT_WAIT_S * 2 ** (number - 1)
        assert base_s <= wait_s <= base_s + RECONNECT_JITTER_S
    assert waits[-1] == 10.0
    assert max(waits) == 10.0


def test_reconnect_waits_have_jitter():
    samples = {tuple(reconnect_waits(cap_s=10.0, attempts=4)) for _ in range(5)}

    assert len(samples) > 1


async def test_reconnect_logs_each_attempt(caplog):
    error = AgentError("unavailable", "refused; start it", reason="refused")
    failures = iter([error] * 2)

    async def connect():
        error = next(failures, None)
        if error is not None:
            raise error

    retrying = reconnect_retrying(0.01, "atlas-01", "nats://127.0.0.1:4222")
    async for attempt in retrying:
        with attempt:
            await connect()

    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith(
        "node atlas-01: reconnect attempt 1 to nats://127.0.0.1:4222 failed: refused"
    )
    assert "attempt 2" in messages[1]
    assert retrying.statistics["attempt_number"] == 3


def test_offline_buffer_drops_the_oldest():
    buffer = OfflineBuffer(size=2)
    for number in range(5):
        buffer.add("s", str(number).encode())

    messages, dropped = buffer.take()

    assert [data for _, data in messages] == [b"3", b"4"]
    assert dropped == 3
    assert buffer.take() == ([], 0)


def test_link_settings_describe_cycles():
    assert LinkSettings().describe() == (
        "disconnect cycles on: connected 30 s, offline 20 s, announced; pass "
        "--disconnect 0 to turn them off"
    )
    assert LinkSettings(disconnect_s=-1).describe() == "disconnect cycles off"
