"""The agent's NATS connection: connect options, and the node id check.

nats-py errors become AgentError here, so the agent and the CLI handle
one exception.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from broker.hints import broker_command
from node_agent.errors import AgentError
from schemas.messages import Ping, encode, reply_decoder

logger = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_NODE_CHECK_TIMEOUT_S = 1.0
CONNECT_RETRY_WAIT_S = 0.1
PING_INTERVAL_S = 5
MAX_OUTSTANDING_PINGS = 3
# Errors that nats-py 2.16 reports to the error callback right before it drops
# the connection and reconnects: from its read loop and its flusher.
_CONNECTION_LOSS_ERRORS = (OSError, nats.errors.UnexpectedEOF)


@dataclass(frozen=True)
class NatsOptions:
    """Connection settings of the NATS server: its URL and credentials."""

    url: str = DEFAULT_NATS_URL
    creds_file: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S


async def connect(
    options: NatsOptions, node: str, on_lost: Callable[[], None] | None = None
) -> Client:
    """Connect to NATS once; raise an `unavailable` AgentError when that fails.

    The client does not reconnect by itself: when the connection is lost it
    closes and calls `on_lost`, and the agent's link loop reconnects.
    """
    client = Client()
    callbacks = _ConnectionCallbacks(node, client, on_lost)
    try:
        await asyncio.wait_for(
            client.connect(**_connect_kwargs(options, node, callbacks)),
            timeout=options.connect_timeout_s,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        await client.close()
        raise _connect_error(options, callbacks.first_errors, exc) from exc
    except asyncio.CancelledError:
        await client.close()
        raise
    callbacks.connected = True

    return client


# nats-py 2.16 can report a CONNECT that the server rejects as a plain
# nats.errors.Error with the server's -ERR text, such as 'Authorization
# Violation' for a wrong token, so the text is checked as well.
_AUTH_FAILURE_TEXTS = ("authorization violation", "authentication")


def _is_auth_failure(exc: BaseException) -> bool:
    if isinstance(exc, nats.errors.AuthorizationError):
        return True
    text = str(exc).lower()

    return any(marker in text for marker in _AUTH_FAILURE_TEXTS)


def _connect_error(
    options: NatsOptions, reported: list[Exception], raised: BaseException
) -> AgentError:
    """Build the error of a failed first connect.

    `reported` contains the errors nats-py passed to the error callback during
    the connect, oldest first, and `raised` is the one the connect raised.
    """
    if any(_is_auth_failure(exc) for exc in [*reported, raised]):
        return AgentError(
            "unavailable",
            f"NATS at {options.url} rejected the credentials; check "
            "--user/--password, --token or --creds",
        )
    # A timeout raised by the connect hides the reason that the last
    # reported attempt failed.
    cause = reported[-1] if reported else raised

    return AgentError(
        "unavailable",
        f"cannot connect to NATS at {options.url}: {_describe(cause)}; "
        f"start it with `{broker_command(options.url)}` or pass --nats",
        reason=_describe(cause),
    )


class _ConnectionCallbacks:
    """Keep the errors of the first connect; report a lost connection once."""

    def __init__(
        self, node: str, client: Client, on_lost: Callable[[], None] | None
    ) -> None:
        self.node = node
        self.client = client
        self.on_lost = on_lost
        self.connected = False
        self.first_errors: list[Exception] = []
        self.loss_cause: Exception | None = None

    async def on_error(self, exc: Exception) -> None:
        if not self.connected:
            self.first_errors.append(exc)
            return
        if isinstance(exc, _CONNECTION_LOSS_ERRORS):
            # The warning of the link loop names this error.
            self.loss_cause = exc
            logger.debug("node %s NATS connection failed: %s", self.node, exc)
            return
        logger.warning("node %s NATS error: %s", self.node, _describe(exc))

    async def on_closed(self) -> None:
        if self.connected and self.on_lost is not None:
            self.on_lost()


def _connect_kwargs(
    options: NatsOptions, node: str, callbacks: _ConnectionCallbacks
) -> dict:
    return {
        "servers": [options.url],
        "name": f"node-agent {node}",
        "user_credentials": options.creds_file,
        "user": options.user,
        "password": options.password,
        "token": options.token,
        "connect_timeout": options.connect_timeout_s,
        "allow_reconnect": False,
        # nats-py keeps retrying a first connect unless the server is dropped
        # from its pool, which happens after the second failed try.
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": CONNECT_RETRY_WAIT_S,
        # A link that fails without closing the socket is noticed after
        # PING_INTERVAL_S * (MAX_OUTSTANDING_PINGS + 1) seconds at most.
        "ping_interval": PING_INTERVAL_S,
        "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
        "error_cb": callbacks.on_error,
        "closed_cb": callbacks.on_closed,
    }


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def check_node_id_free(
    client: Client,
    subject: str,
    node: str,
    timeout_s: float = DEFAULT_NODE_CHECK_TIMEOUT_S,
) -> None:
    """Raise a `conflict` AgentError when an agent already replies on `subject`.

    NOTE: two agents that start within `timeout_s` of each other with the
    same node id can both pass this check.
    """
    ping = Ping(id=f"node-id-check-{node}-{time.time_ns()}", deadline=time.time() + 5)
    try:
        message = await client.request(subject, encode(ping), timeout=timeout_s)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return
    except nats.errors.Error as exc:
        raise AgentError(
            "unavailable",
            f"checking whether node id {node!r} is free failed: {_describe(exc)}",
        ) from exc
    raise AgentError(
        "conflict",
        f"node id {node!r} is already in use by a running agent "
        f"({_responder(message.data)} answered on {subject}); "
        "pass a different --node-id",
    )


def _responder(data: bytes) -> str:
    try:
        return f"agent {reply_decoder.decode(data).node!r}"
    except msgspec.DecodeError:
        return "a client"


async def publish(client: Client, subject: str, data: bytes, node: str) -> bool:
    """Publish `data`; return False, logging why, when NATS cannot take it."""
    try:
        await client.publish(subject, data)
    except nats.errors.Error as exc:
        logger.warning(
            "node %s lost a message to %s: %s", node, subject, _describe(exc)
        )
        return False
    return True


async def subscribe(client: Client, subject: str, callback) -> Subscription:
    """Subscribe, and return once the server has registered the subscription.

    Without the flush, a request sent right after the agent logs that it is
    connected can reach the server first and find no responder.
    """
    try:
        subscription = await client.subscribe(subject, cb=callback)
        await client.flush()
    except (nats.errors.Error, TimeoutError) as exc:
        raise AgentError(
            "unavailable", f"subscribing to {subject} failed: {_describe(exc)}"
        ) from exc

    return subscription


async def unsubscribe(subscription: Subscription, node: str) -> None:
    try:
        await subscription.unsubscribe()
    except nats.errors.Error as exc:
        logger.debug("node %s: unsubscribing failed: %s", node, _describe(exc))


async def close(client: Client, node: str) -> None:
    """Close the connection after sending what is pending."""
    try:
        await client.close()
    except (nats.errors.Error, OSError) as exc:
        logger.debug("node %s: closing NATS failed: %s", node, _describe(exc))


async def drop(client: Client, node: str) -> None:
    """Drop the connection as a failed link would: what is pending is lost.

    nats-py has no call for this, so the pending buffer is emptied and the
    socket aborted through its private attributes. When they are missing
    (another nats-py version), the connection is closed instead.
    """
    writer = getattr(getattr(client, "_transport", None), "_io_writer", None)
    if writer is None or not hasattr(client, "_pending"):
        logger.warning(
            "node %s: cannot abort the NATS socket with this nats-py; closing it",
            node,
        )
        await close(client, node)
        return
    client._pending.clear()
    client._pending_data_size = 0
    writer.transport.abort()
    await close(client, node)


async def drain(client: Client, node: str) -> None:
    """Drain the connection, or close it when it is not connected."""
    if client.is_closed:
        return
    try:
        if client.is_connected:
            await client.drain()
        else:
            await client.close()
    except (nats.errors.Error, TimeoutError) as exc:
        logger.warning("node %s: draining NATS failed: %s", node, _describe(exc))
        await client.close()
