"""Wire messages between the controller, the agents and the CLI.

Every message is a msgspec Struct encoded as JSON, so any NATS client can
read it, and carries the schema version `v`. Fields added later get
defaults, so a payload of an earlier version still decodes.

Agent commands form a tagged union on the field `type`. Each command has a
unique `id`, and agents reply to a repeated id with the first reply. Each
also has a `deadline` in Unix seconds, and agents reject a command that
arrives after it.
"""

from typing import Literal

import msgspec

from schemas.job import DesiredState, JobSpec

SCHEMA_VERSION = 1

ErrorCode = Literal[
    "invalid",
    "not_found",
    "conflict",
    "docker_error",
    "timeout",
    "offline",
    "forbidden",
    "unavailable",
    "internal",
]
ContainerState = Literal[
    "created", "running", "paused", "restarting", "removing", "exited", "dead"
]


class Message(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=False):
    v: int = SCHEMA_VERSION


class ErrorInfo(msgspec.Struct, kw_only=True, frozen=True):
    """Why a request failed: a stable code for scripts, a message for people."""

    code: ErrorCode
    message: str


class PublishedPort(msgspec.Struct, kw_only=True, frozen=True):
    container_port: int
    protocol: str
    host_ip: str
    host_port: int


class ContainerInfo(msgspec.Struct, kw_only=True, frozen=True):
    """One container of a node, as the agent reads it from Docker."""

    id: str
    name: str
    job: str
    node: str
    image: str
    state: ContainerState
    status: str = ""
    exit_code: int | None = None
    oom_killed: bool = False
    ports: list[PublishedPort] = []
    created_at: str = ""
    started_at: str = ""
    finished_at: str = ""


# Commands, controller -> agent, on dsched.node.<node>.cmd


class Command(Message, tag_field="type", forbid_unknown_fields=True):
    id: str
    deadline: float


class Create(Command, tag="create"):
    """Create the job's container and, when `start` is set, start it.

    A start that fails, or a container that exits right after it started,
    removes the container again, so a failed create leaves nothing behind.
    """

    spec: JobSpec
    start: bool = True
    pull: bool = True


class Start(Command, tag="start"):
    job: str


class Stop(Command, tag="stop"):
    job: str
    timeout_s: float | None = None


class Pause(Command, tag="pause"):
    job: str


class Unpause(Command, tag="unpause"):
    job: str


class Remove(Command, tag="remove"):
    job: str
    force: bool = True


class Inspect(Command, tag="inspect"):
    job: str


class List(Command, tag="list"):
    pass


class Logs(Command, tag="logs"):
    job: str
    tail: int = 100


class Ping(Command, tag="ping"):
    pass


class Probe(Command, tag="probe"):
    """Measure the node's link through its shaper.

    The agent ignores `padding`; it is there so that the command has the size
    the downlink is measured with. The reply carries `reply_bytes` of padding,
    the size the uplink is measured with.
    """

    padding: str = ""
    reply_bytes: int = 0


AnyCommand = (
    Create
    | Start
    | Stop
    | Pause
    | Unpause
    | Remove
    | Inspect
    | List
    | Logs
    | Ping
    | Probe
)


class Reply(Message, forbid_unknown_fields=False):
    """An agent's reply to one command, matched to it by `id`."""

    id: str
    node: str
    ok: bool
    error: ErrorInfo | None = None
    container: ContainerInfo | None = None
    containers: list[ContainerInfo] | None = None
    logs: str | None = None
    # Set in the reply to a probe: `reply_bytes` characters, and the node's
    # shaped link rate in bits per second (None when not shaped).
    padding: str | None = None
    link_rate_bps: float | None = None


# Heartbeats and events, agent -> all


class Accelerator(msgspec.Struct, kw_only=True, frozen=True):
    """One GPU, NPU or NPU core of a node, as its vendor tool reports it.

    `kind` is "gpu" or "npu". A value the tool did not report is None.
    """

    kind: str
    index: int
    name: str = ""
    util_percent: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None


class Heartbeat(Message):
    node: str
    seq: int
    sent_at: float
    interval_s: float
    device_type: str
    labels: dict[str, str] = {}
    cpu_percent: float = 0.0
    cpu_count: int = 0
    mem_used_bytes: int = 0
    mem_total_bytes: int = 0
    disk_used_bytes: int = 0
    disk_total_bytes: int = 0
    # Load average over 1, 5 and 15 minutes; empty when unknown.
    load_avg: list[float] = []
    # What the node offers to jobs: the agent's cgroup limit when one is set,
    # else the CPU count and the physical memory.
    cpu_allocatable: float = 0.0
    mem_allocatable_bytes: int = 0
    # What the node's running containers reserve: the sum of their CPU and
    # memory limits. A container without a limit reserves nothing.
    reserved_cpus: float = 0.0
    reserved_mem_bytes: int = 0
    accelerators: list[Accelerator] = []
    # Device paths on the node that a job may map, such as /dev/davinci0;
    # None when the agent does not report them.
    devices: list[str] | None = None
    containers: list[ContainerInfo] = []
    agent_started_at: float = 0.0
    # The link: its shaped rate in bits per second (None when not shaped),
    # the round trip to the NATS server through it in ms (None before the
    # first measurement), when the current connection started and when the
    # next planned disconnect is due (None when disconnect cycles are off),
    # in Unix seconds.
    link_rate_bps: float | None = None
    broker_rtt_ms: float | None = None
    connected_since: float | None = None
    next_disconnect_at: float | None = None


class ContainerEvent(Message):
    """A Docker event of one of the node's containers (start, die, oom, ...)."""

    node: str
    job: str
    container_id: str
    action: str
    time: float
    exit_code: int | None = None


LinkState = Literal["down", "up"]
# The cause of a link going down: an announced or abrupt emulated
# disconnect, or a connection that was lost (the broker went away, the
# network failed).
LinkDownMode = Literal["announced", "abrupt", "lost"]
RateSource = Literal["fixed", "fluctuate", "trace"]


class LinkEvent(Message):
    """The agent's link went down or came back, on `<prefix>.node.<node>.evt.link`.

    A link-down event is sent only for an announced disconnect, right before
    the connection closes; it carries the planned return. A link-up event is
    sent after every return, before the events buffered while offline and a
    heartbeat with the full inventory.
    """

    node: str
    state: LinkState
    time: float
    mode: LinkDownMode
    # down: when the agent plans to reconnect, in Unix seconds.
    planned_return: float | None = None
    # up: how long the link was down, and the next planned disconnect.
    offline_s: float | None = None
    next_disconnect_at: float | None = None
    # up: events buffered while offline that follow this one, and events the
    # bounded buffer dropped (the oldest first).
    buffered_events: int = 0
    dropped_events: int = 0


class RateEvent(Message):
    """The shaped link rate changed, on `<prefix>.node.<node>.evt.rate`."""

    node: str
    time: float
    rate_bps: float
    previous_bps: float | None
    source: RateSource


class NodeEvent(Message):
    """A change of a node's state in the registry: online, offline or lost."""

    node: str
    state: str
    time: float
    message: str = ""


class JobEvent(Message):
    """A job's state transition, published by the controller."""

    job: str
    state: str
    desired: DesiredState
    time: float
    node: str | None = None
    message: str = ""


# Controller API, CLI -> controller, on dsched.api.<verb>


class SubmitRequest(Message, forbid_unknown_fields=True):
    spec: JobSpec
    wait: bool = True
    timeout_s: float = 60.0
    # Only explain where the job would go: store nothing, create nothing.
    dry_run: bool = False


class JobRequest(Message, forbid_unknown_fields=True):
    job: str
    timeout_s: float = 30.0


class LogsRequest(Message, forbid_unknown_fields=True):
    job: str
    tail: int = 100


class ListRequest(Message, forbid_unknown_fields=True):
    pass


class JobView(msgspec.Struct, kw_only=True, frozen=True):
    """A job as the controller stores and reports it."""

    name: str
    desired: DesiredState
    state: str
    node: str | None = None
    container_id: str | None = None
    image: str = ""
    ports: list[PublishedPort] = []
    message: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    # None means Docker's default grace of 10 s.
    stop_grace_s: float | None = None
    # The job a copy belongs to, for a job submitted with a count above 1.
    group: str | None = None


class NodeView(msgspec.Struct, kw_only=True, frozen=True):
    """A node as the controller's registry reports it."""

    name: str
    state: str
    device_type: str
    last_seen: float
    labels: dict[str, str] = {}
    cpu_percent: float = 0.0
    mem_used_bytes: int = 0
    mem_total_bytes: int = 0
    containers: int = 0
    heartbeat_interval_s: float = 0.0
    # When the node stopped being online and, while it is offline after an
    # announced disconnect, when it plans to return; Unix seconds.
    down_since: float | None = None
    planned_return: float | None = None
    # Round trip of the controller's last ping, and the link as the agent
    # reports it; None when not measured or not shaped.
    rtt_ms: float | None = None
    link_rate_bps: float | None = None
    # The round trip from the agent to the NATS server, from its heartbeat.
    broker_rtt_ms: float | None = None
    connected_since: float | None = None
    next_disconnect_at: float | None = None
    # From the node's last heartbeat: load average over 1, 5 and 15 minutes,
    # what the node offers, and its accelerators.
    load_avg: list[float] = []
    cpu_allocatable: float = 0.0
    mem_allocatable_bytes: int = 0
    reserved_cpus: float = 0.0
    reserved_mem_bytes: int = 0
    accelerators: list[Accelerator] = []


class NodeVerdict(msgspec.Struct, kw_only=True, frozen=True):
    """One node in a placement: why it was ruled out, or its score (0 to 1)."""

    name: str
    filtered: str | None = None
    score: float | None = None


class PlacementPlan(msgspec.Struct, kw_only=True, frozen=True):
    """Where a submit places a job's copies, and why.

    `chosen` contains one node per copy in `jobs`, None for a copy no node can
    take. `nodes` contains the verdict on every registered node for the first
    copy that no node can take, or for the first copy when all of them fit.
    """

    strategy: str
    jobs: list[str]
    chosen: list[str | None]
    nodes: list[NodeVerdict]


class ApiReply(Message, forbid_unknown_fields=False):
    ok: bool
    error: ErrorInfo | None = None
    job: JobView | None = None
    # The job's spec as submitted; set in inspect replies.
    spec: JobSpec | None = None
    jobs: list[JobView] | None = None
    nodes: list[NodeView] | None = None
    container: ContainerInfo | None = None
    logs: str | None = None
    # Set when a job's command waits for its node to come back: the node.
    node: NodeView | None = None
    # Set in replies to a submit with dry_run.
    plan: PlacementPlan | None = None


command_decoder = msgspec.json.Decoder(AnyCommand)
reply_decoder = msgspec.json.Decoder(Reply)
heartbeat_decoder = msgspec.json.Decoder(Heartbeat)
link_event_decoder = msgspec.json.Decoder(LinkEvent)
rate_event_decoder = msgspec.json.Decoder(RateEvent)
container_event_decoder = msgspec.json.Decoder(ContainerEvent)
api_reply_decoder = msgspec.json.Decoder(ApiReply)
encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    return encoder.encode(message)
