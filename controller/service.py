"""The controller service: connects to NATS and runs registry, API and reconciler."""

import asyncio
import enum
import logging
import signal
from dataclasses import dataclass, field

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from controller.agents import AgentClient
from controller.api import Api
from controller.codec import decode
from controller.connection import NatsOptions, connect_service, nats_errors
from controller.errors import ConflictError, ControllerError, StateError
from controller.events import EventPublisher
from controller.locks import JobLocks
from controller.parts import Parts
from controller.pinger import DEFAULT_PING_INTERVAL_S, Pinger
from controller.placement import PlacementConfig
from controller.reconciler import DEFAULT_INTERVAL_S, Reconciler
from controller.registry import (
    DEFAULT_MISSED_HEARTBEATS,
    NodeRegistry,
    Transition,
)
from controller.scheduler import Scheduler
from controller.store import JobStore, bucket_for_prefix
from schemas.messages import (
    Heartbeat,
    LinkEvent,
    ListRequest,
    RateEvent,
    encode,
    heartbeat_decoder,
    link_event_decoder,
    rate_event_decoder,
)
from schemas.subjects import DEFAULT_PREFIX, Subjects

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 0.5
# How long a starting controller waits for another controller's reply.
PROBE_TIMEOUT_S = 1.0
DRAIN_TIMEOUT_S = 30.0


class ControllerState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    SERVING = "serving"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ControllerConfig:
    nats: NatsOptions = field(default_factory=NatsOptions)
    prefix: str = DEFAULT_PREFIX
    missed_heartbeats: int = DEFAULT_MISSED_HEARTBEATS
    reconcile_interval_s: float = DEFAULT_INTERVAL_S
    ping_interval_s: float = DEFAULT_PING_INTERVAL_S
    # None means the bucket of the prefix, see bucket_for_prefix.
    bucket: str | None = None
    placement: PlacementConfig = field(default_factory=PlacementConfig)


class Controller:
    """The running service; use `async with Controller(config):` to serve."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.state = ControllerState.NEW
        self.subjects = Subjects(config.prefix)
        self.registry = NodeRegistry(config.missed_heartbeats)
        self._client: Client | None = None
        self._api: Api | None = None
        self._events: EventPublisher | None = None
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "Controller":
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    async def start(self) -> None:
        self._transition(ControllerState.NEW, ControllerState.STARTING)
        try:
            await self._start()
        except BaseException:
            await self._close()
            self.state = ControllerState.STOPPED
            raise
        self.state = ControllerState.SERVING
        placement = self.config.placement
        logger.info(
            "controller ready on %s, subject prefix %s, default strategy %s%s",
            self.config.nats.url,
            self.config.prefix,
            placement.strategy,
            f" over label {placement.spread_over}" if placement.spread_over else "",
        )

    async def stop(self) -> None:
        if self.state is ControllerState.STOPPED:
            return
        self._transition(ControllerState.SERVING, ControllerState.STOPPING)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._api is not None:
            await self._api.stop_serving(DRAIN_TIMEOUT_S)
        await self._close()
        self.state = ControllerState.STOPPED
        logger.info("controller stopped")

    async def _start(self) -> None:
        client = await connect_service(
            self.config.nats,
            "dsched-controller",
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._client = client
        await self._check_no_other_controller(client)
        bucket = self.config.bucket or bucket_for_prefix(self.config.prefix)
        store = await JobStore.open(client.jetstream(), bucket)
        self._events = EventPublisher(client, self.subjects)
        agents = AgentClient(client, self.subjects, is_away=self.registry.is_away)
        parts = Parts(store, self.registry, agents, self._events, JobLocks())

        await self._subscribe_node_messages(client)
        scheduler = Scheduler(self.registry, self.config.placement)
        self._api = Api(parts, scheduler)
        with nats_errors("subscribe to the API subjects"):
            await self._api.serve(client, self.subjects)
        reconciler = Reconciler(parts, scheduler, self.config.reconcile_interval_s)
        pinger = Pinger(agents, self.registry, self.config.ping_interval_s)
        self._tasks = [
            asyncio.create_task(reconciler.run(), name="reconciler"),
            asyncio.create_task(self._sweep_nodes(), name="node-sweep"),
            asyncio.create_task(pinger.run(), name="pinger"),
        ]

    async def _subscribe_node_messages(self, client: Client) -> None:
        handlers = {
            self.subjects.all_heartbeats: self._on_heartbeat,
            self.subjects.all_node_evt("link"): self._on_link_event,
            self.subjects.all_node_evt("rate"): self._on_rate_event,
        }
        for subject, handler in handlers.items():
            with nats_errors(f"subscribe to {subject}"):
                await client.subscribe(subject, cb=handler)

    async def _check_no_other_controller(self, client: Client) -> None:
        """Raise ConflictError if a controller replies on this prefix's API.

        NOTE: two controllers that start within PROBE_TIMEOUT_S of each other
        can both pass this check.
        """
        subject = self.subjects.api("nodes")
        with nats_errors(f"look for another controller on {subject}"):
            try:
                await client.request(
                    subject, encode(ListRequest()), timeout=PROBE_TIMEOUT_S
                )
            except (nats.errors.NoRespondersError, TimeoutError):
                return
        raise ConflictError(
            f"another controller already serves prefix {self.config.prefix!r} on "
            f"{self.config.nats.url}; run one controller per prefix"
        )

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is None or client.is_closed:
            return
        try:
            with nats_errors("drain the NATS connection"):
                await client.drain()
        except ControllerError as exc:
            logger.warning("%s; closing it", exc)
            await client.close()

    def _transition(self, expected: ControllerState, new: ControllerState) -> None:
        if self.state is not expected:
            raise StateError(
                f"cannot move the controller to {new.value}: it is "
                f"{self.state.value}, not {expected.value}"
            )
        self.state = new

    async def _on_heartbeat(self, message: Msg) -> None:
        heartbeat: Heartbeat | None = self._decode_node_message(
            message, heartbeat_decoder, "heartbeat", "hb"
        )
        if heartbeat is None:
            return
        transition = self.registry.observe(heartbeat)
        if transition is not None:
            await self._publish_node_event(transition)

    async def _on_link_event(self, message: Msg) -> None:
        event: LinkEvent | None = self._decode_node_message(
            message, link_event_decoder, "link event", "evt.link"
        )
        if event is None:
            return
        if event.state == "up":
            logger.info(
                "node %s: link up after %s s offline, %d buffered events follow",
                event.node,
                "?" if event.offline_s is None else f"{event.offline_s:.1f}",
                event.buffered_events,
            )
            return
        transition = self.registry.link_down(event)
        if transition is not None:
            await self._publish_node_event(transition)

    async def _on_rate_event(self, message: Msg) -> None:
        event: RateEvent | None = self._decode_node_message(
            message, rate_event_decoder, "rate event", "evt.rate"
        )
        if event is not None:
            logger.debug("node %s: link rate %.0f bit/s", event.node, event.rate_bps)
            self.registry.record_rate(event.node, event.rate_bps)

    def _decode_node_message(self, message: Msg, decoder, kind: str, suffix: str):
        """Decode a node's message, or log and return None when it is invalid.

        A message must arrive on its own node's subject, `<prefix>.node.<node>.`
        followed by `suffix`, so one agent cannot speak for another node.
        """
        try:
            decoded = decode(decoder, message.data, kind)
        except ControllerError as exc:
            logger.warning("ignoring %s on %s: %s", kind, message.subject, exc)
            return None
        expected_subject = f"{self.subjects.prefix}.node.{decoded.node}.{suffix}"
        if message.subject != expected_subject:
            logger.warning(
                "ignoring %s of node %s sent on %s",
                kind,
                decoded.node,
                message.subject,
            )
            return None
        return decoded

    async def _sweep_nodes(self) -> None:
        while True:
            for transition in self.registry.sweep():
                await self._publish_node_event(transition)
            await asyncio.sleep(SWEEP_INTERVAL_S)

    async def _publish_node_event(self, transition: Transition) -> None:
        logger.info(
            "node %s is %s: %s",
            transition.node,
            transition.state.value,
            transition.message,
        )
        if self._events is None:
            return
        try:
            await self._events.node(transition)
        except ControllerError as exc:
            logger.warning("node %s: event not published: %s", transition.node, exc)

    async def _on_disconnected(self) -> None:
        self.registry.controller_disconnected()
        if self.state is not ControllerState.SERVING:
            return
        logger.warning(
            "disconnected from NATS at %s, reconnecting; no node is marked lost "
            "until then",
            self.config.nats.url,
        )

    async def _on_reconnected(self) -> None:
        outage_s = self.registry.controller_reconnected()
        logger.info(
            "reconnected to NATS at %s after %.1f s; nodes that stay silent for "
            "%d heartbeat intervals from now are marked lost",
            self.config.nats.url,
            outage_s,
            self.registry.missed,
        )


async def serve_until_signal(config: ControllerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then drain and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with Controller(config):
        await stop.wait()
        logger.info("stop signal received, draining")
