"""NATS connections: the one place nats-py errors become controller errors."""

import contextlib
import logging
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from broker.hints import broker_command
from controller.errors import (
    CommandTimeoutError,
    ControllerError,
    UnavailableError,
)

logger = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
CONNECT_TIMEOUT_S = 2.0
RECONNECT_WAIT_S = 1.0
PING_INTERVAL_S = 5
MAX_OUTSTANDING_PINGS = 3


NATS_URL_SCHEMES = ("nats", "tls", "ws", "wss")


def check_nats_url(value: str) -> str:
    """Check that each comma-separated URL has a NATS scheme and a host.

    Returns `value`, or raises ValueError that quotes it and shows the
    expected form.
    """
    transports = set()
    for url in split_nats_urls(value):
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is no number
        except ValueError as exc:
            raise ValueError(f"invalid NATS URL {value!r}: {exc}") from exc
        if parts.scheme not in NATS_URL_SCHEMES or not parts.hostname:
            raise ValueError(
                f"invalid NATS URL {value!r}: expected SCHEME://HOST[:PORT] with "
                f"scheme {', '.join(NATS_URL_SCHEMES)}, e.g. {DEFAULT_NATS_URL}; "
                "separate several URLs with commas"
            )
        transports.add("websocket" if parts.scheme in ("ws", "wss") else "tcp")
    if len(transports) > 1:
        raise ValueError(
            f"invalid NATS URL list {value!r}: use either ws/wss URLs or "
            "nats/tls URLs, not both"
        )
    return value


def split_nats_urls(value: str) -> list[str]:
    return [url.strip() for url in value.split(",")]


@dataclass(frozen=True)
class NatsOptions:
    """Server URL and credentials of a NATS connection."""

    url: str = DEFAULT_NATS_URL
    creds: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None

    def connect_kwargs(self) -> dict:
        kwargs = {
            "servers": split_nats_urls(self.url),
            "connect_timeout": CONNECT_TIMEOUT_S,
        }
        if self.creds:
            kwargs["user_credentials"] = self.creds
        if self.user:
            kwargs["user"] = self.user
            kwargs["password"] = self.password
        if self.token:
            kwargs["token"] = self.token
        return kwargs


# nats-py 2.16 raises a plain nats.errors.Error with the server's -ERR text
# when the server rejects the CONNECT, so the text is matched as well.
_AUTH_ERROR_MARKERS = ("authorization violation", "authentication")


def _rejected_credentials(exc: BaseException) -> bool:
    if isinstance(exc, nats.errors.AuthorizationError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _AUTH_ERROR_MARKERS)


def _unreachable(options: NatsOptions, exc: BaseException) -> UnavailableError:
    if _rejected_credentials(exc):
        return UnavailableError(
            f"NATS at {options.url} rejected the credentials; check "
            "--user/--password, --token or --creds"
        )
    reason = str(exc) or type(exc).__name__
    return UnavailableError(
        f"cannot connect to NATS at {options.url} ({reason}); start the broker "
        f"with `{broker_command(options.url)}` or pass --nats URL"
    )


async def connect_once(options: NatsOptions, name: str) -> Client:
    """Connect without reconnecting, for short-lived CLI commands."""
    return await _connect_without_retry(options, name, reconnect_time_wait=0.1)


async def connect_service(options: NatsOptions, name: str, **callbacks) -> Client:
    """Connect for the long-running service, and keep reconnecting forever.

    Only a lost connection is retried: when the first connect fails, this
    raises at once, so a missing broker or rejected credentials are reported
    instead of waited for.
    """
    client = await _connect_without_retry(
        options,
        name,
        reconnect_time_wait=RECONNECT_WAIT_S,
        # A link that fails without closing the socket is noticed after
        # PING_INTERVAL_S * (MAX_OUTSTANDING_PINGS + 1) seconds at most, so
        # the registry stops ageing nodes soon after the controller is cut off.
        ping_interval=PING_INTERVAL_S,
        max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        **callbacks,
    )
    # nats-py 2.16 reads both options again on every reconnect.
    client.options["allow_reconnect"] = True
    client.options["max_reconnect_attempts"] = -1
    return client


async def _connect_without_retry(options: NatsOptions, name: str, **settings) -> Client:
    client = Client()
    try:
        # nats-py 2.16 retries the first connect up to max_reconnect_attempts
        # times, even with allow_reconnect off, so the limit is set to one.
        await client.connect(
            **options.connect_kwargs(),
            name=name,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=_log_nats_error,
            **settings,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        # A server that rejects the credentials leaves the socket open.
        await client.close()
        raise _unreachable(options, exc) from exc
    return client


async def _log_nats_error(exc: Exception) -> None:
    logger.debug("NATS connection error: %r", exc)


@contextlib.contextmanager
def nats_errors(
    action: str,
    *,
    no_responders: ControllerError | None = None,
    timeout: ControllerError | None = None,
) -> Iterator[None]:
    """Translate the nats-py errors of one operation into controller errors.

    `action` names what was tried; `no_responders` and `timeout` replace the
    generic errors when the caller can say more, such as which node is silent.
    """
    try:
        yield
    except ControllerError:
        raise
    except nats.errors.NoRespondersError as exc:
        raise no_responders or UnavailableError(
            f"{action} failed: no subscriber for this subject"
        ) from exc
    except TimeoutError as exc:
        raise timeout or CommandTimeoutError(f"{action} timed out") from exc
    except nats.js.errors.ServiceUnavailableError as exc:
        raise UnavailableError(
            f"{action} failed: JetStream does not respond; run nats-server with "
            "JetStream enabled (-js), or wait until it has started"
        ) from exc
    except (nats.errors.Error, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise UnavailableError(f"{action} failed: {reason}") from exc
