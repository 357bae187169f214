import asyncio
import logging

import nats
import pytest

from controller.connection import NatsOptions
from controller.errors import StateError, UnavailableError
from controller.service import Controller, ControllerConfig, ControllerState
from schemas.messages import api_reply_decoder
from tests.controller.fleet import free_port

TIMEOUT_S = 10.0


@pytest.fixture
async def service(nats_server):
    config = ControllerConfig(nats=NatsOptions(nats_server.url))
    async with asyncio.timeout(TIMEOUT_S):
        controller = Controller(config)
        await controller.start()
    yield controller
    async with asyncio.timeout(TIMEOUT_S):
        await controller.stop()


@pytest.fixture
async def client(nats_server):
    connection = await asyncio.wait_for(nats.connect(nats_server.url), TIMEOUT_S)
    yield connection
    await asyncio.wait_for(connection.close(), TIMEOUT_S)


async def request(client, verb, payload):
    message = await client.request(f"dsched.api.{verb}", payload, timeout=TIMEOUT_S)
    return api_reply_decoder.decode(message.data)


async def test_malformed_json_is_invalid(service, client):
    reply = await request(client, "submit", b"{not json")

    assert not reply.ok
    assert reply.error.code == "invalid"
    assert reply.error.message.startswith("invalid submit request: not valid JSON")


async def test_unknown_field_is_invalid(service, client):
    payload = b'{"spec": {"name": "a", "image": "b", "imgae": "c"}}'

    reply = await request(client, "submit", payload)

    assert reply.error.code == "invalid"
    assert "imgae" in reply.error.message
    assert "$.spec" in reply.error.message


async def test_wrong_field_type_is_invalid(service, client):
    reply = await request(client, "stop", b'{"job": 5}')

    assert reply.error.code == "invalid"
    assert "$.job" in reply.error.message


async def test_failure_log_without_job(service, client, caplog):
    caplog.set_level(logging.INFO, logger="controller.api")

    await request(client, "jobs", b"{not json")

    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("jobs request failed: invalid") for m in messages)
    assert not any("for job" in m for m in messages)


async def test_failure_log_names_job(service, client, caplog):
    caplog.set_level(logging.INFO, logger="controller.api")

    await request(client, "stop", b'{"job": "ghost"}')

    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("stop request for job ghost failed") for m in messages)


async def test_empty_payload_lists_jobs(service, client):
    reply = await request(client, "jobs", b"")

    assert reply.ok
    assert reply.jobs == []


async def test_controller_state_follows_lifecycle(nats_server):
    controller = Controller(ControllerConfig(nats=NatsOptions(nats_server.url)))

    async with asyncio.timeout(TIMEOUT_S):
        async with controller:
            serving = controller.state
            with pytest.raises(StateError, match="it is serving, not new"):
                await controller.start()

    assert serving is ControllerState.SERVING
    assert controller.state is ControllerState.STOPPED


async def test_controller_without_nats_fails():
    url = f"nats://127.0.0.1:{free_port()}"
    config = ControllerConfig(nats=NatsOptions(url))
    controller = Controller(config)

    with pytest.raises(UnavailableError, match=f"cannot connect to NATS at {url}"):
        await asyncio.wait_for(controller.start(), 30.0)

    assert controller.state is ControllerState.STOPPED


def test_reply_without_spec_decodes():
    payload = b'{"v": 1, "ok": true, "job": {"name": "a", "desired": "running", "state": "running"}}'

    reply = api_reply_decoder.decode(payload)

    assert reply.spec is None
    assert reply.job.name == "a"
