"""Telemetry, reservations and device paths that a running agent puts in its heartbeats."""

import asyncio
import dataclasses
import os

import msgspec
import pytest

from node_agent.agent import AgentSettings
from schemas.job import JobSpec
from schemas.messages import (
    Create,
    Heartbeat,
    Pause,
    Reply,
    Stop,
    Unpause,
    heartbeat_decoder,
)
from schemas.subjects import Subjects
from tests.node_agent.support import command_fields, send

TIMEOUT_S = 10
MIB = 1024**2


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


async def next_heartbeat(subscription, predicate, expected: str) -> Heartbeat:
    """Return the first heartbeat that satisfies `predicate`, or fail the test."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                message = await subscription.next_msg(timeout=TIMEOUT_S)
                beat = heartbeat_decoder.decode(message.data)
                if predicate(beat):
                    return beat
    except TimeoutError:
        pytest.fail(f"no heartbeat {expected} within {TIMEOUT_S} s")


def job_state(beat: Heartbeat, job: str) -> str | None:
    for container in beat.containers:
        if container.job == job:
            return container.state
    return None


async def send_command(nats_client, node: str, message_type, **fields) -> Reply:
    message = message_type(**command_fields(), **fields)
    return await asyncio.wait_for(send(nats_client, node, message), TIMEOUT_S)


def limited_spec(job: str, image: str) -> JobSpec:
    raw = {
        "name": job,
        "image": image,
        "command": "sleep 300",
        "cpus": 0.5,
        "mem_limit": "64m",
    }
    return msgspec.convert(raw, JobSpec)


async def test_heartbeats_report_reservation(
    agent, nats_client, test_image, unique_name
):
    job = unique_name("limited")
    subscription = await nats_client.subscribe(Subjects().node_hb(agent.node))
    empty = await next_heartbeat(subscription, lambda beat: True, "at all")

    created = await send_command(
        nats_client, agent.node, Create, spec=limited_spec(job, test_image)
    )
    running = await next_heartbeat(
        subscription,
        lambda beat: job_state(beat, job) == "running",
        f"listing job {job} as running",
    )
    paused = await send_command(nats_client, agent.node, Pause, job=job)
    while_paused = await next_heartbeat(
        subscription,
        lambda beat: job_state(beat, job) == "paused",
        f"listing job {job} as paused",
    )
    await send_command(nats_client, agent.node, Unpause, job=job)
    stopped = await send_command(nats_client, agent.node, Stop, job=job, timeout_s=0)
    after_stop = await next_heartbeat(
        subscription,
        lambda beat: job_state(beat, job) == "exited",
        f"listing job {job} as exited",
    )

    assert empty.reserved_cpus == 0.0
    assert empty.reserved_mem_bytes == 0
    assert created.ok, created.error
    assert running.reserved_cpus == 0.5
    assert running.reserved_mem_bytes == 64 * MIB
    assert "/dev/null" in running.devices
    assert paused.ok, paused.error
    assert while_paused.reserved_cpus == 0.5
    assert while_paused.reserved_mem_bytes == 64 * MIB
    assert stopped.ok, stopped.error
    assert after_stop.reserved_cpus == 0.0
    assert after_stop.reserved_mem_bytes == 0


async def test_docker_update_changes_reservation(
    agent, nats_client, docker_client, test_image, unique_name
):
    job = unique_name("updated")
    subscription = await nats_client.subscribe(Subjects().node_hb(agent.node))
    created = await send_command(
        nats_client, agent.node, Create, spec=limited_spec(job, test_image)
    )
    assert created.ok, created.error
    await next_heartbeat(
        subscription,
        lambda beat: beat.reserved_mem_bytes == 64 * MIB,
        "reserving 64 MiB",
    )

    docker_client.api.update_container(created.container.id, mem_limit="32m")
    updated = await next_heartbeat(
        subscription,
        lambda beat: beat.reserved_mem_bytes != 64 * MIB,
        "with a reservation other than 64 MiB after docker update",
    )

    assert updated.reserved_mem_bytes == 32 * MIB
    assert updated.reserved_cpus == 0.5


async def test_unreadable_dev_root_reports_none(
    start_agent, agent_settings, nats_client, tmp_path, caplog
):
    settings = dataclasses.replace(agent_settings, dev_root=tmp_path / "missing")
    subscription = await nats_client.subscribe(Subjects().node_hb(settings.node))
    await start_agent(settings)

    beat = await next_heartbeat(subscription, lambda beat: True, "at all")
    await next_heartbeat(subscription, lambda beat: True, "after the first")

    warnings = [
        record.getMessage()
        for record in caplog.records
        if "carry no device paths" in record.getMessage()
    ]
    assert beat.devices is None
    assert len(warnings) == 1
    assert "missing" in warnings[0]
