"""Telemetry that a running agent puts in its heartbeats."""

import os

from node_agent.agent import AgentSettings
from schemas.messages import heartbeat_decoder
from schemas.subjects import Subjects

TIMEOUT_S = 10


async def test_heartbeats_carry_load_and_allocatable(
    start_agent, agent_settings, nats_client
):
    settings = AgentSettings(
        node=agent_settings.node,
        device_type="x86",
        heartbeat_interval_s=agent_settings.heartbeat_interval_s,
        nats=agent_settings.nats,
    )
    subscription = await nats_client.subscribe(Subjects().node_hb(settings.node))
    await start_agent(settings)

    message = await subscription.next_msg(timeout=TIMEOUT_S)
    beat = heartbeat_decoder.decode(message.data)

    assert beat.device_type == "x86"
    assert len(beat.load_avg) == 3
    assert all(value >= 0 for value in beat.load_avg)
    assert 0 < beat.cpu_allocatable <= (os.cpu_count() or 0)
    assert 0 < beat.mem_allocatable_bytes <= beat.mem_total_bytes
    assert beat.accelerators == []
