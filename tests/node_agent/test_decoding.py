"""Decoding of command payloads and the checks made before a command runs."""

import asyncio
import time

import pytest

from node_agent.agent import Agent, AgentSettings
from schemas.messages import Ping, Start, encode

TIMEOUT_S = 5


@pytest.fixture
def agent() -> Agent:
    return Agent(AgentSettings(node="decode-node"))


@pytest.mark.parametrize(
    ("payload", "expected_id"),
    [
        (b"not json", ""),
        (b'"a string"', ""),
        (b'{"type": "explode", "id": "c1", "deadline": 1}', "c1"),
        (b'{"type": "start", "id": "c2", "deadline": 1}', "c2"),
        (b'{"type": "start", "id": "c3", "deadline": 1, "job": "j", "x": 1}', "c3"),
        (b'{"type": "start", "id": 7, "deadline": 1, "job": "j"}', ""),
    ],
)
async def test_malformed_command_gets_invalid(agent, payload, expected_id):
    reply = await asyncio.wait_for(agent.reply_to(payload), TIMEOUT_S)

    assert reply.ok is False
    assert reply.error.code == "invalid"
    assert reply.id == expected_id
    assert reply.node == "decode-node"
    assert "cannot decode the command" in reply.error.message


async def test_ping_answered_ok(agent):
    ping = Ping(id="p1", deadline=time.time() + 10)

    reply = await asyncio.wait_for(agent.reply_to(encode(ping)), TIMEOUT_S)

    assert reply.ok is True
    assert reply.id == "p1"


async def test_late_command_gets_timeout(agent):
    late = Start(id="late-1", deadline=time.time() - 1, job="never-started")

    reply = await asyncio.wait_for(agent.reply_to(encode(late)), TIMEOUT_S)

    assert reply.ok is False
    assert reply.error.code == "timeout"
    assert "after its deadline" in reply.error.message
