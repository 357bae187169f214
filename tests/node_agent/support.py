"""Helpers of the node agent tests: commands over NATS, ports, HTTP fetches."""

import socket
import time
import urllib.error
import urllib.request
import uuid

from nats.aio.client import Client

from schemas.messages import Reply, encode, reply_decoder
from schemas.subjects import Subjects

REQUEST_TIMEOUT_S = 30.0
COMMAND_LIFETIME_S = 60.0
FETCH_TIMEOUT_S = 10.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command_fields() -> dict:
    """Return a fresh command id and a deadline a minute from now."""
    return {
        "id": f"cmd-{uuid.uuid4().hex}",
        "deadline": time.time() + COMMAND_LIFETIME_S,
    }


async def send(client: Client, node: str, command) -> Reply:
    """Send one command to the node's agent and return its decoded reply."""
    message = await client.request(
        Subjects().node_cmd(node), encode(command), timeout=REQUEST_TIMEOUT_S
    )
    return reply_decoder.decode(message.data)


def fetch(port: int, timeout_s: float = FETCH_TIMEOUT_S) -> str:
    """GET / from 127.0.0.1:`port`, retrying until the server is up or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                return page.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
