"""Heartbeats, events, slow stops, restarts and neighbours of a running agent."""

import asyncio
import dataclasses
import itertools
import logging
import os
import threading
import time

import msgspec
import pytest

from controller.registry import DEFAULT_MISSED_HEARTBEATS
from node_agent.agent import Agent, AgentSettings
from node_agent.driver import DockerDriver
from node_agent.errors import AgentError
from schemas.job import JobSpec
from schemas.messages import (
    Create,
    Inspect,
    List,
    Remove,
    Stop,
    container_event_decoder,
    heartbeat_decoder,
)
from schemas.subjects import Subjects
from tests.node_agent.support import command_fields, send

TIMEOUT_S = 10
START_TIMEOUT_S = 10
# Long enough for several reconnect attempts: the first waits are 0.25 to
# 0.5 s, then about twice as long each time.
OUTAGE_S = 3.5
# Python 3.11 sizes the default executor behind asyncio.to_thread at
# min(32, os.cpu_count() + 4) threads, as concurrent.futures.ThreadPoolExecutor
# does by default.
DEFAULT_EXECUTOR_THREADS = min(32, (os.cpu_count() or 1) + 4)
# The heartbeat interval of the busy node. The controller marks a node lost
# after DEFAULT_MISSED_HEARTBEATS intervals of silence.
BUSY_HEARTBEAT_INTERVAL_S = 1.0
# Twice the controller's lost limit at that interval, so a heartbeat that
# waits for these stops to end would make the node lost.
SLOW_STOP_GRACE_S = 2 * DEFAULT_MISSED_HEARTBEATS * BUSY_HEARTBEAT_INTERVAL_S
IGNORES_SIGTERM = "sh -c 'trap \"\" TERM; sleep 600'"


def job_spec(name: str, image: str, command: str, **fields) -> JobSpec:
    raw = {"name": name, "image": image, "command": command, **fields}
    return msgspec.convert(raw, JobSpec)


async def command(nats_client, node: str, message_type, **fields):
    message = message_type(**command_fields(), **fields)
    return await asyncio.wait_for(send(nats_client, node, message), 30)


async def next_matching(subscription, decode, predicate):
    """Return the first decoded message that satisfies `predicate`."""
    while True:
        message = await subscription.next_msg(timeout=TIMEOUT_S)
        decoded = decode(message.data)
        if predicate(decoded):
            return decoded


async def wait_for_record(caplog, text: str) -> logging.LogRecord:
    """Return the first captured log record whose message contains `text`."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            for record in caplog.records:
                if text in record.getMessage():
                    return record
            await asyncio.sleep(0.05)


async def test_heartbeats_carry_seq_and_inventory(
    agent, nats_client, test_image, unique_name
):
    job = unique_name("beat")
    await command(
        nats_client, agent.node, Create, spec=job_spec(job, test_image, "sleep 300")
    )
    subscription = await nats_client.subscribe(Subjects().node_hb(agent.node))

    beats = [
        await next_matching(subscription, heartbeat_decoder.decode, lambda _: True)
        for _ in range(3)
    ]

    sequence = [beat.seq for beat in beats]
    assert sequence == sorted(sequence)
    assert len(set(sequence)) == 3
    assert beats[-1].node == agent.node
    assert beats[-1].device_type == "ATLAS_I"
    assert beats[-1].labels == {"site": "lab"}
    assert beats[-1].interval_s == pytest.approx(0.2)
    assert beats[-1].cpu_count > 0
    assert beats[-1].mem_total_bytes > beats[-1].mem_used_bytes > 0
    assert beats[-1].disk_total_bytes > 0
    assert [(info.job, info.state) for info in beats[-1].containers] == [
        (job, "running")
    ]


async def test_events_report_start_and_exit_code(
    agent, nats_client, test_image, unique_name
):
    job = unique_name("exits")
    subject = Subjects().node_evt(agent.node, "container")
    subscription = await nats_client.subscribe(subject)
    spec = job_spec(job, test_image, "sh -c 'sleep 0.3; exit 3'")

    await command(nats_client, agent.node, Create, spec=spec)
    started = await next_matching(
        subscription,
        container_event_decoder.decode,
        lambda event: event.action == "start",
    )
    died = await next_matching(
        subscription,
        container_event_decoder.decode,
        lambda event: event.action == "die",
    )

    assert started.job == job
    assert started.node == agent.node
    assert died.job == job
    assert died.exit_code == 3
    assert died.container_id == started.container_id


async def test_stop_outlasting_client_timeout_reported(driver, test_image, unique_name):
    job = unique_name("stubborn")
    spec = job_spec(
        job, test_image, "sh -c \"trap '' TERM; while true; do sleep 0.1; done\""
    )
    driver.create(spec)
    impatient = DockerDriver(driver.node, client_timeout_s=1)
    impatient.connect()

    try:
        stopped = await asyncio.wait_for(
            asyncio.to_thread(impatient.stop, job, 3), TIMEOUT_S * 2
        )
    finally:
        impatient.close()

    assert stopped.state == "exited"
    assert stopped.exit_code == 137
    assert stopped.status == "exited with code 137"


async def test_restarted_agent_finds_containers(
    agent_settings, nats_client, docker_client, test_image, unique_name
):
    job = unique_name("survivor")
    async with Agent(agent_settings) as first:
        created = await command(
            nats_client, first.node, Create, spec=job_spec(job, test_image, "sleep 300")
        )

    async with Agent(agent_settings) as second:
        inspected = await command(nats_client, second.node, Inspect, job=job)
        listed = await command(nats_client, second.node, List)
        stopped = await command(nats_client, second.node, Stop, job=job, timeout_s=0)

    assert inspected.ok, inspected.error
    assert inspected.container.id == created.container.id
    assert [info.id for info in listed.containers] == [created.container.id]
    assert stopped.ok, stopped.error
    assert stopped.container.state == "exited"


async def test_agents_on_one_engine_stay_apart(
    agent, agent_settings, nats_client, test_image, unique_name, cleanup_node
):
    neighbour_settings = AgentSettings(
        node=cleanup_node(unique_name("neighbour")),
        heartbeat_interval_s=agent_settings.heartbeat_interval_s,
        nats=agent_settings.nats,
    )
    job = unique_name("mine")
    await command(
        nats_client, agent.node, Create, spec=job_spec(job, test_image, "sleep 300")
    )

    async with Agent(neighbour_settings) as neighbour:
        listed = await command(nats_client, neighbour.node, List)
        stopped = await command(nats_client, neighbour.node, Stop, job=job)
        removed = await command(nats_client, neighbour.node, Remove, job=job)
    still_mine = await command(nats_client, agent.node, Inspect, job=job)

    assert listed.containers == []
    assert stopped.error.code == "not_found"
    assert removed.error.code == "not_found"
    assert still_mine.container.state == "running"


async def test_agents_on_one_engine_run_one_job_each(
    agent, agent_settings, nats_client, test_image, unique_name, cleanup_node
):
    neighbour_settings = AgentSettings(
        node=cleanup_node(unique_name("neighbour")),
        heartbeat_interval_s=agent_settings.heartbeat_interval_s,
        nats=agent_settings.nats,
    )
    job = unique_name("moved")
    spec = job_spec(job, test_image, "sleep 300")
    mine = await command(nats_client, agent.node, Create, spec=spec)

    async with Agent(neighbour_settings) as neighbour:
        theirs = await command(nats_client, neighbour.node, Create, spec=spec)
        inspected = await command(nats_client, neighbour.node, Inspect, job=job)
        removed = await command(nats_client, neighbour.node, Remove, job=job)
    still_mine = await command(nats_client, agent.node, Inspect, job=job)

    assert mine.container.name == job
    assert theirs.ok, theirs.error
    assert theirs.container.name == f"{job}.{neighbour.node}"
    assert inspected.container.id == theirs.container.id
    assert removed.ok, removed.error
    assert still_mine.container.id == mine.container.id
    assert still_mine.container.state == "running"


async def test_same_node_id_rejected_in_process(agent, agent_settings):
    duplicate = Agent(agent_settings)

    with pytest.raises(AgentError) as info:
        await asyncio.wait_for(duplicate.start(), START_TIMEOUT_S)

    assert info.value.code == "conflict"
    assert f"node id {agent.node!r} is already in use" in info.value.message
    assert duplicate.state.value == "stopped"


async def test_broker_outage_logs_each_attempt(agent, nats_server, nats_client, caplog):
    caplog.set_level(logging.INFO, logger="node_agent")
    heartbeats = await nats_client.subscribe(Subjects().node_hb(agent.node))
    before = await next_matching(heartbeats, heartbeat_decoder.decode, bool)

    await asyncio.to_thread(nats_server.stop)
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(nats_server.start)
    back = await wait_for_record(caplog, "link up after")

    messages = [r.getMessage() for r in caplog.records if r.name.startswith("node_")]
    lost = [m for m in messages if "lost its NATS connection" in m]
    attempts = [m for m in messages if "reconnect attempt" in m]
    assert len(lost) == 1
    assert len(attempts) >= 2
    assert [f"attempt {n} to" in m for n, m in enumerate(attempts, 1)] == [True] * len(
        attempts
    )
    assert "offline (lost)" in back.getMessage()
    reply = await command(nats_client, agent.node, List)
    assert reply.ok
    after = await next_matching(heartbeats, heartbeat_decoder.decode, bool)
    assert after.seq > before.seq


async def test_heartbeats_continue_during_slow_removes(
    start_agent, agent_settings, nats_client, test_image, unique_name
):
    settings = dataclasses.replace(
        agent_settings, heartbeat_interval_s=BUSY_HEARTBEAT_INTERVAL_S
    )
    agent = await start_agent(settings)
    # More removes than the default executor has threads, so Docker calls
    # that go through it would wait for a whole stop grace.
    jobs = [unique_name("stubborn") for _ in range(DEFAULT_EXECUTOR_THREADS + 2)]
    grace = f"{SLOW_STOP_GRACE_S:g}s"
    created = await asyncio.gather(
        *(
            command(
                nats_client,
                agent.node,
                Create,
                spec=job_spec(
                    job, test_image, IGNORES_SIGTERM, stop_grace_period=grace
                ),
            )
            for job in jobs
        )
    )
    arrivals: list[float] = []

    async def note_arrival(_message) -> None:
        arrivals.append(time.monotonic())

    subscription = await nats_client.subscribe(
        Subjects().node_hb(agent.node), cb=note_arrival
    )

    removes_sent_at = time.monotonic()
    removed = await asyncio.gather(
        *(command(nats_client, agent.node, Remove, job=job) for job in jobs)
    )
    removes_done_at = time.monotonic()
    await subscription.unsubscribe()

    during = [t for t in arrivals if removes_sent_at <= t <= removes_done_at]
    times = [removes_sent_at, *during, removes_done_at]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    limit_s = DEFAULT_MISSED_HEARTBEATS * BUSY_HEARTBEAT_INTERVAL_S
    assert [reply.error for reply in created if not reply.ok] == []
    assert [reply.error for reply in removed if not reply.ok] == []
    assert removes_done_at - removes_sent_at >= SLOW_STOP_GRACE_S
    assert max(gaps) <= limit_s, f"heartbeat gaps {[round(g, 2) for g in gaps]} s"


async def test_stopped_agent_ends_heartbeat_threads(agent_settings, nats_client):
    heartbeats = await nats_client.subscribe(Subjects().node_hb(agent_settings.node))
    async with Agent(agent_settings):
        await next_matching(heartbeats, heartbeat_decoder.decode, bool)
        running = thread_names(f"heartbeat-{agent_settings.node}")

    # The executor shuts down without waiting, so its idle threads exit soon after.
    deadline = time.monotonic() + TIMEOUT_S
    while thread_names(f"heartbeat-{agent_settings.node}"):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)

    assert running != []
    assert thread_names(f"heartbeat-{agent_settings.node}") == []


def thread_names(prefix: str) -> list[str]:
    return [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith(prefix)
    ]
