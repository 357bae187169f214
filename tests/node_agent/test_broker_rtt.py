"""The agent's round trip to its NATS server, on a real nats-server."""

import asyncio

import nats

from node_agent.bandwidth import FixedRate, LinkShaper
from node_agent.broker_rtt import BrokerRtt

# 8 kbit/s: behind a 2,000-byte message, a PING waits about 2 s for the uplink.
SLOW_BPS = 8000.0
BACKLOG_BYTES = 2000
BURST_BYTES = 100


async def test_round_trip_is_measured_while_connected(nats_server):
    client = await nats.connect(nats_server.url)
    try:
        rtt = BrokerRtt(lambda: client, None, interval_s=1.0)

        measured = await rtt.measure()
    finally:
        await client.close()

    assert measured is not None
    assert 0.0 < measured < 10_000.0
    assert rtt.last_ms == measured


async def test_slow_link_queues_the_ping(nats_server):
    shaper = LinkShaper(FixedRate(SLOW_BPS), burst_bytes=BURST_BYTES)
    client = await nats.connect(nats_server.url)
    try:
        backlog = asyncio.create_task(shaper.send(BACKLOG_BYTES))
        await asyncio.sleep(0)
        rtt = BrokerRtt(lambda: client, shaper, interval_s=1.0)

        measured = await rtt.measure()
        await backlog
    finally:
        shaper.release()
        await client.close()

    # The ping waits until the uplink has paid for the backlog.
    assert measured > 1000.0


async def test_no_round_trip_without_a_connection():
    rtt = BrokerRtt(lambda: None, None, interval_s=1.0)
    rtt.last_ms = 12.0

    assert await rtt.measure() is None
    assert rtt.last_ms is None


async def test_cancelled_measurement_keeps_the_connection(nats_server):
    client = await nats.connect(nats_server.url)
    try:
        echo = await client.subscribe("echo")
        rtt = BrokerRtt(lambda: client, None, interval_s=1.0)
        measuring = asyncio.create_task(rtt.measure())
        # Let the PING go out, then cancel while its PONG is on the way.
        for _ in range(2):
            await asyncio.sleep(0)
        measuring.cancel()
        await rtt.settle()

        # A read loop stopped by a cancelled PING future receives nothing.
        await client.publish("echo", b"still reading")
        received = await echo.next_msg(timeout=5)
    finally:
        await client.close()

    assert received.data == b"still reading"
