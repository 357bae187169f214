"""Link measurement behind `controller probe`: round trip and rates of a node.

Probe commands go straight to the node's agent over NATS, through the agent's
shaper, so the controller service is not needed.

- Round trip: probes without padding, one after another; the median in ms.
- Uplink (agent to here): `count` probes sent at once, each asking for a
  reply of `size` characters. The shaper sends the replies one after another,
  so the rate is (count - 1) * reply size * 8 / (last arrival - first arrival),
  with the reply size as encoded on the wire.
- Downlink (here to agent): the same with `size` characters of padding in
  each command and empty replies. The agent receives the commands one after
  another through its shaper and replies to each at once.

With one probe the rate is size * 8 / (elapsed - round trip).

Before the rates, the prober checks that the trains fit in the timeout at
the link rate the agent reports, because a train that takes longer keeps
the node's link busy long after the CLI gave up. The first round-trip probe
waits at most FIRST_REPLY_TIMEOUT_S, so a node without an agent is reported
soon even when another subscriber keeps NATS from saying so.
"""

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client

from controller.codec import decode
from controller.connection import nats_errors
from controller.errors import (
    CommandTimeoutError,
    InvalidRequestError,
    NodeOfflineError,
    UnavailableError,
    error_from_info,
)
from controller.output import format_rate
from schemas.messages import Probe, encode, reply_decoder
from schemas.subjects import Subjects

DEFAULT_PROBE_BYTES = 262144
DEFAULT_PROBE_COUNT = 5
# Room kept under the server's max payload for the command's other fields.
ENVELOPE_BYTES = 4096
# The first probe waits at most this long, or --timeout if that is shorter.
FIRST_REPLY_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LinkMeasure:
    node: str
    rtt_ms: float
    uplink_bps: float | None
    downlink_bps: float | None
    bytes: int
    count: int


@dataclass(frozen=True)
class Burst:
    """Probes sent at once: the measured messages' wire size and reply times."""

    size_bytes: int
    started_s: float
    arrivals_s: list[float]


@dataclass(frozen=True)
class ProbeReply:
    """A probe's reply: the link rate the agent reports and the reply's wire size."""

    link_rate_bps: float | None
    size_bytes: int


def rate_bps(burst: Burst, rtt_s: float) -> float | None:
    """Return the link rate that a burst of probes shows, in bits per second.

    None when the times allow no rate: equal arrivals, or one arrival no
    later than a round trip after the start.
    """
    arrivals_s = burst.arrivals_s
    if len(arrivals_s) >= 2:
        span_s = max(arrivals_s) - min(arrivals_s)
        if span_s <= 0:
            return None
        return (len(arrivals_s) - 1) * burst.size_bytes * 8 / span_s
    transfer_s = arrivals_s[0] - burst.started_s - rtt_s
    if transfer_s <= 0:
        return None
    return burst.size_bytes * 8 / transfer_s


def train_s(rate_bps: float, size_bytes: int, count: int) -> float:
    """Return the seconds a link at `rate_bps` needs for `count` probes of padding.

    An estimate: it leaves out the rest of each message and the shaper's burst.
    """
    return count * size_bytes * 8 / rate_bps


def check_trains_fit(
    rate_bps: float | None, size_bytes: int, count: int, timeout_s: float
) -> None:
    """Raise InvalidRequestError if a train would take longer than `timeout_s`.

    `rate_bps` is the link rate the agent reports, None when not shaped.
    """
    if rate_bps is None or rate_bps <= 0:
        return
    needed_s = train_s(rate_bps, size_bytes, count)
    if needed_s <= timeout_s:
        return
    raise InvalidRequestError(
        f"at {format_rate(rate_bps)}, {count} probes of {size_bytes} bytes take "
        f"about {needed_s:.0f} s each way, over --timeout {timeout_s:g} s; pass a "
        "smaller --bytes or --count, or a larger --timeout"
    )


def max_probe_bytes(max_payload_bytes: int) -> int:
    """Return the largest --bytes a server with this max payload carries."""
    return max_payload_bytes - ENVELOPE_BYTES


class LinkProber:
    """Sends probe commands to one node and times their replies."""

    def __init__(
        self,
        client: Client,
        subjects: Subjects,
        node: str,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._subject = subjects.node_cmd(node)
        self.node = node
        self.timeout_s = timeout_s
        self._clock = clock

    async def measure(self, size_bytes: int, count: int) -> LinkMeasure:
        rtt_ms, link_rate_bps = await self.rtt_ms(count)
        check_trains_fit(link_rate_bps, size_bytes, count, self.timeout_s)
        uplink = await self.burst(count, reply_bytes=size_bytes)
        downlink = await self.burst(count, padding_bytes=size_bytes)
        rtt_s = rtt_ms / 1000.0
        return LinkMeasure(
            node=self.node,
            rtt_ms=rtt_ms,
            uplink_bps=rate_bps(uplink, rtt_s),
            downlink_bps=rate_bps(downlink, rtt_s),
            bytes=size_bytes,
            count=count,
        )

    async def rtt_ms(self, count: int) -> tuple[float, float | None]:
        """Return the median round trip of `count` empty probes, in ms.

        Also returns the link rate of the last reply, in bits per second.
        """
        started = self._clock()
        reply = await self._first_request(self._probe())
        round_trips_s = [self._clock() - started]
        for _ in range(count - 1):
            started = self._clock()
            reply = await self._request(self._probe())
            round_trips_s.append(self._clock() - started)
        return statistics.median(round_trips_s) * 1000.0, reply.link_rate_bps

    async def burst(
        self, count: int, reply_bytes: int = 0, padding_bytes: int = 0
    ) -> Burst:
        """Send `count` probes at once and time their replies.

        The burst's size is that of the replies when `reply_bytes` is set,
        else that of the commands.
        """
        probes = [self._probe(reply_bytes, padding_bytes) for _ in range(count)]
        started = self._clock()
        results = await asyncio.gather(*(self._timed(probe) for probe in probes))
        if reply_bytes:
            size = max(reply_size for _, reply_size in results)
        else:
            size = max(len(encode(probe)) for probe in probes)
        return Burst(size, started, [arrival for arrival, _ in results])

    async def _timed(self, probe: Probe) -> tuple[float, int]:
        """Send one probe; return its reply's arrival time and wire size."""
        reply = await self._request(probe)
        return self._clock(), reply.size_bytes

    def _probe(self, reply_bytes: int = 0, padding_bytes: int = 0) -> Probe:
        return Probe(
            id=uuid.uuid4().hex,
            deadline=time.time() + self.timeout_s,
            padding="x" * padding_bytes,
            reply_bytes=reply_bytes,
        )

    async def _first_request(self, probe: Probe) -> ProbeReply:
        """Send the first probe, waiting at most FIRST_REPLY_TIMEOUT_S."""
        wait_s = min(self.timeout_s, FIRST_REPLY_TIMEOUT_S)
        silent = UnavailableError(
            f"node {self.node} did not reply within {wait_s:g} s: no agent of "
            f"{self.node} is connected, or its link is saturated"
        )
        return await self._request(probe, wait_s, silent)

    async def _request(
        self,
        probe: Probe,
        wait_s: float | None = None,
        timeout: Exception | None = None,
    ) -> ProbeReply:
        offline = NodeOfflineError(
            f"node {self.node!r} is offline or unknown: no agent subscribes on "
            f"{self._subject}; see `controller nodes`"
        )
        timeout = timeout or CommandTimeoutError(
            f"node {self.node!r} did not reply to a probe within "
            f"{self.timeout_s:g} s; pass a larger --timeout or smaller --bytes",
            self.timeout_s,
        )
        with nats_errors(
            f"probe of node {self.node!r}", no_responders=offline, timeout=timeout
        ):
            message = await self._client.request(
                self._subject, encode(probe), timeout=wait_s or self.timeout_s
            )
        reply = decode(reply_decoder, message.data, f"reply of node {self.node!r}")
        if not reply.ok and reply.error is not None:
            raise error_from_info(reply.error)
        return ProbeReply(reply.link_rate_bps, len(message.data))
