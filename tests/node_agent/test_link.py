"""Disconnect cycles, reconnects and the offline buffer of a real agent on real NATS."""

import asyncio
import dataclasses
import logging
import time

import msgspec
import nats.errors
import pytest

from node_agent.bandwidth import FixedRate, FluctuatingRate
from node_agent.link import LinkSettings
from schemas.job import JobSpec
from schemas.messages import (
    List,
    Probe,
    Stop,
    container_event_decoder,
    encode,
    heartbeat_decoder,
    link_event_decoder,
    rate_event_decoder,
    reply_decoder,
)
from schemas.subjects import Subjects
from tests.node_agent.support import command_fields, send

CONNECTED_S = 1.0
OFFLINE_S = 1.5
WAIT_S = 15


class Recorder:
    """Messages of one subject with their arrival times (time.monotonic)."""

    def __init__(self, decode) -> None:
        self.decode = decode
        self.items: list[tuple[float, object]] = []
        self.arrived = asyncio.Event()

    async def on_message(self, message) -> None:
        self.items.append((time.monotonic(), self.decode(message.data)))
        self.arrived.set()

    async def next(self, predicate=lambda item: True, after: int = 0):
        """Return (index, arrival, item) of the first matching item from `after` on."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for index in range(after, len(self.items)):
                    arrival, item = self.items[index]
                    if predicate(item):
                        return index, arrival, item
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
def cycling_settings(agent_settings):
    def settings(**link):
        fields = {"disconnect_s": CONNECTED_S, "reconnect_s": OFFLINE_S, **link}
        return dataclasses.replace(agent_settings, link=LinkSettings(**fields))

    return settings


async def record(nats_client, subject: str, decode) -> Recorder:
    recorder = Recorder(decode)
    await nats_client.subscribe(subject, cb=recorder.on_message)
    await nats_client.flush()
    return recorder


def job_spec(name: str, image: str, command: str) -> JobSpec:
    return msgspec.convert({"name": name, "image": image, "command": command}, JobSpec)


async def create(driver, spec: JobSpec):
    """Create and start a container of the node before its agent runs."""
    return await asyncio.to_thread(driver.create, spec, True, False)


def is_state(state: str):
    return lambda event: event.state == state


async def test_announced_cycle_offline_window(
    cycling_settings, start_agent, nats_client, driver, test_image, unique_name
):
    job = unique_name("autonomy")
    await create(driver, job_spec(job, test_image, "sleep 300"))
    agent = await start_agent(cycling_settings(mode="announced"))
    subjects = Subjects()
    links = await record(
        nats_client, subjects.node_evt(agent.node, "link"), link_event_decoder.decode
    )
    beats = await record(
        nats_client, subjects.node_hb(agent.node), heartbeat_decoder.decode
    )

    _, down_at, down = await links.next(is_state("down"))
    with pytest.raises(nats.errors.NoRespondersError):
        await nats_client.request(
            subjects.node_cmd(agent.node), encode(List(**command_fields())), 2
        )
    last_index = len(beats.items) - 1
    _, up_at, up = await links.next(is_state("up"))
    index, first_at, first = await beats.next(after=last_index + 1)

    last_before_at, last_before = beats.items[last_index]
    assert down.mode == "announced"
    assert down.planned_return == pytest.approx(down.time + OFFLINE_S, abs=0.01)
    assert up.mode == "announced"
    assert up.offline_s == pytest.approx(OFFLINE_S, abs=0.5)
    assert up_at - down_at == pytest.approx(OFFLINE_S, abs=0.5)
    assert OFFLINE_S <= first_at - last_before_at < OFFLINE_S + 1.0
    assert first.seq == last_before.seq + 1
    assert first.next_disconnect_at == pytest.approx(up.time + CONNECTED_S, abs=0.1)
    assert [(c.job, c.state) for c in first.containers] == [(job, "running")]


async def test_abrupt_cycle_without_link_down(
    cycling_settings, start_agent, nats_client
):
    agent = await start_agent(cycling_settings(mode="abrupt"))
    subjects = Subjects()
    links = await record(
        nats_client, subjects.node_evt(agent.node, "link"), link_event_decoder.decode
    )
    beats = await record(
        nats_client, subjects.node_hb(agent.node), heartbeat_decoder.decode
    )

    _, _, up = await links.next(is_state("up"))
    await beats.next(after=len(beats.items))

    assert [event.state for _, event in links.items] == ["up"]
    assert up.mode == "abrupt"
    gaps = [
        (later[0] - earlier[0], later[1].seq - earlier[1].seq)
        for earlier, later in zip(beats.items, beats.items[1:], strict=False)
    ]
    offline_gap, seq_step = max(gaps)
    assert OFFLINE_S <= offline_gap < OFFLINE_S + 1.0
    assert seq_step == 1


async def test_offline_events_sent_on_return(
    cycling_settings, start_agent, nats_client, driver, test_image, unique_name
):
    # Both containers exit while the agent is offline, and their two die
    # events overflow a buffer of one.
    for delay_s, code in ((CONNECTED_S + 0.3, 3), (CONNECTED_S + 0.6, 4)):
        command = f"sh -c 'sleep {delay_s}; exit {code}'"
        await create(driver, job_spec(unique_name("dies-offline"), test_image, command))
    agent = await start_agent(cycling_settings(mode="announced", event_buffer=1))
    subjects = Subjects()
    links = await record(
        nats_client, subjects.node_evt(agent.node, "link"), link_event_decoder.decode
    )
    events = await record(
        nats_client,
        subjects.node_evt(agent.node, "container"),
        container_event_decoder.decode,
    )
    _, _, down = await links.next(is_state("down"))
    _, up_at, up = await links.next(is_state("up"))
    _, died_at, died = await events.next(lambda event: event.action == "die")

    assert (up.buffered_events, up.dropped_events) == (1, 1)
    assert died.exit_code == 4
    assert down.time < died.time < up.time
    assert died_at >= up_at


async def test_lost_reply_resent_acts_once(
    cycling_settings,
    start_agent,
    nats_client,
    driver,
    docker_client,
    test_image,
    unique_name,
    caplog,
):
    caplog.set_level(logging.WARNING, logger="node_agent")
    job = unique_name("slow-stop")
    slow_stop = "sh -c 'trap \"sleep 3; exit 0\" TERM; while true; do sleep 0.1; done'"
    created = await create(driver, job_spec(job, test_image, slow_stop))
    # Connected 2 s, offline 3 s. The stop below starts right after a return
    # and takes 3 s, so it ends while the link is down and its reply is lost.
    agent = await start_agent(
        cycling_settings(mode="abrupt", disconnect_s=2.0, reconnect_s=3.0)
    )
    subjects = Subjects()
    links = await record(
        nats_client, subjects.node_evt(agent.node, "link"), link_event_decoder.decode
    )
    first_up, _, _ = await links.next(is_state("up"))
    stop = Stop(**command_fields(), job=job, timeout_s=20)
    since = int(time.time()) - 1

    with pytest.raises(nats.errors.TimeoutError):
        await nats_client.request(subjects.node_cmd(agent.node), encode(stop), 4.0)
    await links.next(is_state("up"), after=first_up + 1)
    resent = reply_decoder.decode(
        (await nats_client.request(subjects.node_cmd(agent.node), encode(stop), 5)).data
    )

    lost = [r for r in caplog.records if "reply to command" in r.getMessage()]
    assert [r.getMessage().split()[6] for r in lost] == [stop.id]
    assert resent.ok and resent.id == stop.id
    assert resent.container.state == "exited"
    container_id = created.id
    actions = [
        event["Action"]
        for event in docker_client.events(
            since=since,
            until=int(time.time()) + 1,
            filters={"container": container_id},
            decode=True,
        )
    ]
    assert actions.count("stop") == 1
    assert actions.count("die") == 1


async def test_agent_returns_after_broker_kill(
    agent_settings, start_agent, nats_server, nats_client
):
    cap_s = 1.0
    settings = dataclasses.replace(
        agent_settings, link=LinkSettings(disconnect_s=0, reconnect_max_wait_s=cap_s)
    )
    agent = await start_agent(settings)
    subjects = Subjects()
    beats = await record(
        nats_client, subjects.node_hb(agent.node), heartbeat_decoder.decode
    )
    _, _, before = await beats.next()

    await asyncio.to_thread(nats_server.kill)
    await asyncio.sleep(3)
    count_before = len(beats.items)
    await asyncio.to_thread(nats_server.start)
    restarted_at = time.time()
    await nats_client.flush(timeout=WAIT_S)
    reply = await send(nats_client, agent.node, List(**command_fields()))
    _, _, after = await beats.next(after=count_before)

    assert reply.ok
    assert agent.online
    assert agent.connected_since - restarted_at < cap_s + 1.0
    assert after.seq > before.seq


async def test_returning_agent_yields_taken_node_id(
    cycling_settings, start_agent, agent_settings, nats_client
):
    cycling = await start_agent(cycling_settings(reconnect_s=2.0))
    links = await record(
        nats_client,
        Subjects().node_evt(cycling.node, "link"),
        link_event_decoder.decode,
    )
    await links.next(is_state("down"))

    newcomer = await start_agent(agent_settings)
    failure = await asyncio.wait_for(cycling.wait_failed(), WAIT_S)
    reply = await send(nats_client, newcomer.node, List(**command_fields()))

    assert failure.code == "conflict"
    assert f"node id {cycling.node!r} is already in use" in failure.message
    assert reply.ok
    assert not cycling.online


async def test_stop_does_not_wait_for_the_shaper(
    agent_settings, start_agent, nats_client
):
    slow = dataclasses.replace(agent_settings, bandwidth=FixedRate(100_000))
    agent = await start_agent(slow)
    # 200 kB at 100 kbit/s take 16 s on the link.
    probe = Probe(**command_fields(), reply_bytes=200_000)
    await nats_client.publish(
        Subjects().node_cmd(agent.node), encode(probe), reply=nats_client.new_inbox()
    )
    await asyncio.sleep(0.5)

    started_at = time.monotonic()
    await asyncio.wait_for(agent.stop(), 30)

    assert time.monotonic() - started_at < 8


async def test_offline_rate_changes_become_one_event(
    cycling_settings, start_agent, nats_client, driver, test_image, unique_name
):
    command = f"sh -c 'sleep {CONNECTED_S + 0.4}; exit 5'"
    await create(driver, job_spec(unique_name("dies-offline"), test_image, command))
    settings = dataclasses.replace(
        cycling_settings(event_buffer=1),
        bandwidth=FluctuatingRate(50e6, 500e6, 0.1, seed=3),
    )
    agent = await start_agent(settings)
    events = await record(
        nats_client, f"dsched.node.{agent.node}.evt.>", lambda data: data
    )

    up_index, _, _ = await events.next(lambda data: b'"state":"up"' in data)
    await asyncio.sleep(0.3)

    after_up = [data for _, data in events.items[up_index:]]
    up = link_event_decoder.decode(after_up[0])
    died = container_event_decoder.decode(after_up[1])
    rate = rate_event_decoder.decode(after_up[2])
    assert (up.buffered_events, up.dropped_events) == (1, 0)
    assert (died.action, died.exit_code) == ("die", 5)
    assert rate.source == "fluctuate"
    assert rate.previous_bps is not None
