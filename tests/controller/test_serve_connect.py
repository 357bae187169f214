import asyncio
import time

import nats
from click.testing import CliRunner

from controller.cli import ExitCode, cli
from controller.connection import NatsOptions
from controller.service import Controller, ControllerConfig
from schemas.messages import api_reply_decoder
from tests.controller.fleet import free_port

# A failing first connect gives up after one retry of each server, which takes
# about 1 s on loopback, so this bound leaves room for a slow machine.
FAIL_FAST_S = 5.0
TIMEOUT_S = 10.0
RECONNECT_TIMEOUT_S = 15.0


def test_serve_without_broker_fails_fast():
    port = free_port()
    url = f"nats://127.0.0.1:{port}"

    started = time.monotonic()
    result = CliRunner().invoke(cli, ["--nats", url, "serve"])
    took_s = time.monotonic() - started

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr.startswith(f"Error: cannot connect to NATS at {url} (")
    assert result.stderr.endswith(
        f"; start the broker with `broker --port {port}` or pass --nats URL\n"
    )
    assert "TimeoutError" not in result.stderr
    assert took_s < FAIL_FAST_S


def test_serve_with_wrong_password_fails(auth_nats_server):
    server = auth_nats_server("user: alice\npassword: s3cret")
    args = ["--nats", server.url, "--user", "alice", "--password", "wrong", "serve"]

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert f"NATS at {server.url} rejected the credentials" in result.stderr


async def test_service_reconnects_after_broker_restart(nats_server):
    controller = Controller(ControllerConfig(nats=NatsOptions(nats_server.url)))
    async with asyncio.timeout(TIMEOUT_S):
        await controller.start()

    try:
        nats_server.stop()
        nats_server.start()
        reply = await asyncio.wait_for(
            nodes_request(nats_server.url), RECONNECT_TIMEOUT_S
        )
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            await controller.stop()

    assert reply.ok


async def nodes_request(url):
    """Send a nodes request until the controller replies, and return the reply."""
    client = await nats.connect(url)
    try:
        while True:
            try:
                message = await client.request("dsched.api.nodes", b"{}", timeout=1.0)
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                await asyncio.sleep(0.2)
                continue
            return api_reply_decoder.decode(message.data)
    finally:
        await client.close()
