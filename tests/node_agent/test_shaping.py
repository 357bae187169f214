"""The shaper of a real agent on real NATS: fixed rates, traces, rate events."""

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from node_agent.agent import Agent
from node_agent.bandwidth import FixedRate, TraceRate
from node_agent.traces import load_trace
from schemas.messages import (
    Probe,
    encode,
    heartbeat_decoder,
    rate_event_decoder,
)
from schemas.subjects import Subjects
from tests.node_agent.support import command_fields, send

TRACES = Path(__file__).parent.parent / "data" / "traces"
MBIT = 1e6


@pytest.fixture
def shaped_agent(agent_settings, start_agent):
    async def start(plan, burst_bytes: int = 64 * 1024) -> Agent:
        settings = dataclasses.replace(
            agent_settings, bandwidth=plan, burst_bytes=burst_bytes
        )
        return await start_agent(settings)

    return start


async def probe_train(nats_client, node: str, count: int, **probe) -> list[tuple]:
    """Send `count` probes at once; return (arrival, reply size) in arrival order."""
    inbox = nats_client.new_inbox()
    arrivals: list[tuple[float, int]] = []
    done = asyncio.Event()

    async def on_reply(message):
        arrivals.append((time.monotonic(), len(message.data)))
        if len(arrivals) == count:
            done.set()

    subscription = await nats_client.subscribe(inbox, cb=on_reply)
    for _ in range(count):
        command = encode(Probe(**command_fields(), **probe))
        await nats_client.publish(Subjects().node_cmd(node), command, reply=inbox)
    await asyncio.wait_for(done.wait(), 60)
    await subscription.unsubscribe()
    return arrivals


def train_rate_bps(arrivals: list[tuple[float, int]], size: int) -> float:
    """Rate of a train from its first to its last arrival, in bits per second."""
    return (len(arrivals) - 1) * size * 8 / (arrivals[-1][0] - arrivals[0][0])


async def test_fixed_rate_both_directions(shaped_agent, nats_client):
    agent = await shaped_agent(FixedRate(20 * MBIT))
    size = 200_000
    sample = Probe(**command_fields(), padding="x" * size)

    uplink = await probe_train(nats_client, agent.node, 6, reply_bytes=size)
    downlink = await probe_train(nats_client, agent.node, 6, padding="x" * size)

    assert train_rate_bps(uplink, uplink[-1][1]) == pytest.approx(20 * MBIT, rel=0.05)
    assert train_rate_bps(downlink, len(encode(sample))) == pytest.approx(
        20 * MBIT, rel=0.05
    )


async def test_rate_in_heartbeats_and_events(shaped_agent, nats_client):
    subjects = Subjects()
    rates = await nats_client.subscribe(subjects.all_node_events)
    beats = await nats_client.subscribe(subjects.all_heartbeats)
    agent = await shaped_agent(FixedRate(20 * MBIT))

    while (message := await rates.next_msg(timeout=10)).subject != subjects.node_evt(
        agent.node, "rate"
    ):
        pass
    event = rate_event_decoder.decode(message.data)
    beat = heartbeat_decoder.decode((await beats.next_msg(timeout=10)).data)

    probed = await send(nats_client, agent.node, Probe(**command_fields()))
    assert probed.link_rate_bps == 20 * MBIT
    assert (event.rate_bps, event.previous_bps, event.source) == (
        20 * MBIT,
        None,
        "fixed",
    )
    assert beat.link_rate_bps == 20 * MBIT


async def test_trace_replay_follows_each_second(shaped_agent, nats_client, node_id):
    trace = load_trace(TRACES / "Verizon-LTE-short.down")
    events = []

    async def on_rate(message):
        events.append(rate_event_decoder.decode(message.data))

    await nats_client.subscribe(Subjects().node_evt(node_id, "rate"), cb=on_rate)
    agent = await shaped_agent(TraceRate(trace), burst_bytes=16 * 1024)
    inbox = nats_client.new_inbox()
    arrivals: list[tuple[float, int]] = []
    size = 8000

    async def send_probe():
        command = encode(Probe(**command_fields(), reply_bytes=size))
        await nats_client.publish(Subjects().node_cmd(agent.node), command, reply=inbox)

    async def on_reply(message):
        arrivals.append((time.time(), len(message.data)))
        await send_probe()

    await nats_client.subscribe(inbox, cb=on_reply)
    for _ in range(16):
        await send_probe()
    await asyncio.sleep(8.5)

    assert [event.rate_bps for event in events[:8]] == list(trace.rates_bps[:8])
    for earlier, later in zip(events[1:7], events[2:8], strict=True):
        window = [n for at, n in arrivals if earlier.time <= at < later.time]
        measured_bps = sum(window) * 8 / (later.time - earlier.time)
        # One message more or less in a second is within the margin.
        assert measured_bps == pytest.approx(
            earlier.rate_bps, rel=0.1, abs=2 * size * 8
        )


async def test_probe_replies_are_not_kept(agent, nats_client):
    reply = await send(
        nats_client, agent.node, Probe(**command_fields(), reply_bytes=10)
    )

    assert reply.padding == "x" * 10
    assert len(agent._replies) == 0


async def test_probe_reply_size_out_of_range_is_invalid(agent, nats_client):
    reply = await send(
        nats_client, agent.node, Probe(**command_fields(), reply_bytes=-1)
    )

    assert reply.ok is False
    assert reply.error.code == "invalid"
    assert "probe reply size -1 is out of range" in reply.error.message


async def test_heartbeats_carry_the_broker_round_trip(shaped_agent, nats_client):
    beats = await nats_client.subscribe(Subjects().all_heartbeats)
    agent = await shaped_agent(FixedRate(20 * MBIT))

    measured = None
    for _ in range(10):
        beat = heartbeat_decoder.decode((await beats.next_msg(timeout=10)).data)
        if beat.node == agent.node and beat.broker_rtt_ms is not None:
            measured = beat.broker_rtt_ms
            break

    assert measured is not None
    assert measured > 0.0
