import msgspec
import nats.errors
import pytest

from controller.agents import AgentClient
from controller.errors import CommandTimeoutError, NodeOfflineError
from controller.retries import COMMAND_RESEND_AFTER_S, NO_AGENT_PATIENCE_S
from schemas.messages import Reply, Start, command_decoder, encode
from schemas.subjects import Subjects
from tests.controller.helpers import FakeClock


class ReplyMessage(msgspec.Struct):
    data: bytes


class ScriptedClient:
    """A NATS client stand-in whose requests fail as scripted, then reply ok.

    Each entry of `failures` is "timeout" (the request waits its whole
    timeout on the fake clock) or "no_responders".
    """

    def __init__(self, clock: FakeClock, failures: list[str]) -> None:
        self.clock = clock
        self.failures = list(failures)
        self.commands = []
        self.timeouts = []

    async def request(self, subject: str, data: bytes, timeout: float):
        command = command_decoder.decode(data)
        self.commands.append(command)
        self.timeouts.append(timeout)
        if self.failures:
            failure = self.failures.pop(0)
            if failure == "timeout":
                self.clock.advance(timeout)
                raise TimeoutError
            raise nats.errors.NoRespondersError
        reply = Reply(id=command.id, node="n1", ok=True)
        return ReplyMessage(data=encode(reply))


def agent_client(clock: FakeClock, failures: list[str], is_away=None):
    client = ScriptedClient(clock, failures)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    agents = AgentClient(client, Subjects(), clock=clock, sleep=sleep, is_away=is_away)
    return agents, client


async def test_resend_after_timeout_reuses_id():
    clock = FakeClock()
    agents, client = agent_client(clock, ["timeout"])

    reply = await agents.call("n1", Start, bound_s=10.0, job="web")

    assert reply.ok
    assert len(client.commands) == 2
    assert client.commands[0].id == client.commands[1].id
    assert client.commands[0].deadline == client.commands[1].deadline
    assert reply.id == client.commands[0].id


async def test_resend_without_responders_reuses_id():
    clock = FakeClock()
    agents, client = agent_client(clock, ["no_responders", "no_responders"])

    reply = await agents.call("n1", Start, bound_s=10.0, job="web")

    assert reply.ok
    assert len({command.id for command in client.commands}) == 1
    assert len(client.commands) == 3


async def test_last_attempt_ends_at_deadline():
    clock = FakeClock()
    agents, client = agent_client(clock, ["timeout", "timeout"])

    await agents.call("n1", Start, bound_s=7.0, job="web")

    assert client.timeouts[0] == COMMAND_RESEND_AFTER_S
    assert client.timeouts[1] == COMMAND_RESEND_AFTER_S
    assert client.timeouts[2] == pytest.approx(7.0 - 2 * COMMAND_RESEND_AFTER_S)


async def test_timeout_after_deadline_names_bound():
    clock = FakeClock()
    agents, client = agent_client(clock, ["timeout"] * 10)

    with pytest.raises(CommandTimeoutError, match="within 7 s") as caught:
        await agents.call("n1", Start, bound_s=7.0, job="web")

    assert caught.value.bound_s == 7.0
    assert len(client.commands) == 3
    assert len({command.id for command in client.commands}) == 1


async def test_missing_agent_until_deadline_is_offline():
    clock = FakeClock()
    agents, client = agent_client(clock, ["no_responders"] * 100)

    with pytest.raises(NodeOfflineError, match="no agent subscribes"):
        await agents.call("n1", Start, bound_s=3.0, job="web")

    assert clock.now <= client.commands[0].deadline
    assert len({command.id for command in client.commands}) == 1


async def test_missing_agent_given_up_before_deadline():
    clock = FakeClock()
    started_at = clock.now
    agents, client = agent_client(clock, ["no_responders"] * 100)

    with pytest.raises(NodeOfflineError):
        await agents.call("n1", Start, bound_s=30.0, job="web")

    assert clock.now - started_at >= NO_AGENT_PATIENCE_S
    assert clock.now - started_at < NO_AGENT_PATIENCE_S + 2.5


async def test_node_gone_away_stops_resends():
    clock = FakeClock()
    started_at = clock.now
    away = set()
    agents, client = agent_client(clock, ["timeout"] * 10, is_away=away.__contains__)
    away.add("n1")

    with pytest.raises(NodeOfflineError, match="went offline or lost") as caught:
        await agents.call("n1", Start, bound_s=30.0, job="web")

    assert len(client.commands) == 1
    assert clock.now - started_at == COMMAND_RESEND_AFTER_S
    assert "may still have been applied" in str(caught.value)


async def test_online_node_still_resent():
    clock = FakeClock()
    agents, client = agent_client(clock, ["timeout"], is_away=lambda node: False)

    reply = await agents.call("n1", Start, bound_s=10.0, job="web")

    assert reply.ok
    assert len(client.commands) == 2


async def test_away_check_skipped_first_send():
    clock = FakeClock()
    agents, client = agent_client(clock, [], is_away=lambda node: True)

    reply = await agents.call("n1", Start, bound_s=10.0, job="web")

    assert reply.ok
    assert len(client.commands) == 1
