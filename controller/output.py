"""Rendering of API results for people (lines, tables) and scripts (JSON)."""

import datetime
import time

import msgspec
from rich.console import Console
from rich.table import Table

from controller.lifecycle import missing_container_message
from controller.registry import clock_time
from schemas.messages import (
    ContainerInfo,
    JobView,
    NodeView,
    PlacementPlan,
    PublishedPort,
)

# Width for tables when stdout is not a terminal, so piped output is not cut.
PIPE_WIDTH = 200


def console() -> Console:
    terminal = Console()
    if terminal.is_terminal:
        return terminal
    return Console(width=PIPE_WIDTH, color_system=None)


def to_json(value) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def event_json(subject: str, event: dict) -> str:
    """Return an event and its subject as compact JSON on one line."""
    return msgspec.json.encode({"subject": subject, "event": event}).decode()


def format_ports(ports: list[PublishedPort]) -> str:
    if not ports:
        return "none"
    return ", ".join(
        f"{port.host_ip or '0.0.0.0'}:{port.host_port}->"
        f"{port.container_port}/{port.protocol}"
        for port in ports
    )


def describe_job(job: JobView) -> str:
    """Return a line such as `web running on node n1, container 3f2a..., ports ...`."""
    text = f"{job.name} {job.state}"
    if job.node:
        text += f" on node {job.node}"
    if job.container_id:
        text += f", container {job.container_id[:12]}"
    if job.state == "running":
        text += f", ports {format_ports(job.ports)}"
    if job.message:
        text += f" ({job.message})"
    return text


def ago(timestamp: float, now: float | None = None) -> str:
    if not timestamp:
        return "-"
    seconds = max(0.0, (now or time.time()) - timestamp)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def describe_deferral(job: JobView, node: NodeView, now: float | None = None) -> str:
    """Return one line saying the job's desired state waits for its node."""
    return (
        f"{job.name}: node {node.name} is {_away_state(node, now)}; desired state "
        f"{job.desired} is stored and the controller applies it when the node returns"
    )


def inspect_note(
    job: JobView,
    container: ContainerInfo | None,
    node: NodeView | None,
    now: float | None = None,
) -> str | None:
    """Return the note `controller inspect` prints below the JSON, or None.

    `node` is set when the job's node is offline or lost, so `container` is
    what its last heartbeat reported.
    """
    if node is not None:
        return (
            f"node {node.name} is {_away_state(node, now)}; the container's state "
            "is unknown until the node returns, and the job shows its last "
            f"reported state, {job.state}"
        )
    if container is not None or job.node is None:
        return None
    if job.desired == "removed":
        return (
            f"job {job.name!r} has no container on node {job.node!r} and its "
            "desired state is removed; the controller deletes the job shortly"
        )
    return missing_container_message(job.name, job.node)


def _away_state(node: NodeView, now: float | None) -> str:
    """Return "offline, planned return ..." or "lost, last heartbeat 3.2s ago"."""
    if node.state == "offline" and node.planned_return is not None:
        return f"offline, planned return {planned_return(node, now)}"
    if node.last_seen:
        return f"{node.state}, last heartbeat {seconds_ago(node.last_seen, now)}"
    return f"{node.state}, no heartbeat since the controller started"


def describe_link(measure) -> list[str]:
    """Return the lines of a `controller probe` result: round trip, uplink, downlink."""
    rates = (
        ("uplink", measure.uplink_bps, "replies"),
        ("downlink", measure.downlink_bps, "commands"),
    )
    lines = [f"rtt       {measure.rtt_ms:.2f} ms (median of {measure.count})"]
    for name, rate, messages in rates:
        shown = (
            "too fast to measure, raise --bytes" if rate is None else format_rate(rate)
        )
        lines.append(
            f"{name:<9} {shown} ({measure.count} {messages} with "
            f"{measure.bytes} bytes of padding)"
        )
    return lines


def job_table(jobs: list[JobView]) -> Table:
    table = Table("NAME", "NODE", "DESIRED", "STATE", "CONTAINER", "PORTS", "UPDATED")
    for job in jobs:
        table.add_row(
            job.name,
            job.node or "-",
            job.desired,
            job.state,
            (job.container_id or "-")[:12],
            format_ports(job.ports),
            ago(job.updated_at),
        )
    return table


def plan_table(plan: PlacementPlan) -> Table:
    """Return a table with one row per node: its score, or why it is ruled out."""
    table = Table("NODE", "SCORE", "RULED OUT BY")
    for verdict in plan.nodes:
        score = "-" if verdict.score is None else f"{verdict.score:.3f}"
        table.add_row(verdict.name, score, verdict.filtered or "")
    return table


def plan_choices(plan: PlacementPlan) -> list[str]:
    """Return one line per copy: the node the strategy chose, or that none fits."""
    return [
        f"{job} -> {node or 'no node fits'} ({plan.strategy})"
        for job, node in zip(plan.jobs, plan.chosen, strict=True)
    ]


def node_table(nodes: list[NodeView], now: float | None = None) -> Table:
    now = now or time.time()
    table = Table(
        "NAME",
        "STATE",
        "DEVICE TYPE",
        "CONTAINERS",
        "CPU",
        "MEMORY",
        "LAST HEARTBEAT",
        "PLANNED RETURN",
        "RTT",
        "LINK RATE",
        "ACCELERATORS",
    )
    for node in nodes:
        table.add_row(
            node.name,
            node.state,
            node.device_type,
            str(node.containers),
            f"{node.cpu_percent:.0f}%",
            _memory(node),
            seconds_ago(node.last_seen, now),
            planned_return(node, now),
            *_link_cells(node),
            accelerator_cell(node),
        )
    return table


def accelerator_cell(node: NodeView) -> str:
    """Return "2 npu 40% 12%", the use of each accelerator, or "-" for none."""
    if not node.accelerators:
        return "-"
    kinds = sorted({accelerator.kind for accelerator in node.accelerators})
    uses = [
        "?" if accelerator.util_percent is None else f"{accelerator.util_percent:.0f}%"
        for accelerator in node.accelerators
    ]
    return f"{len(node.accelerators)} {'/'.join(kinds)} {' '.join(uses)}"


def _link_cells(node: NodeView) -> tuple[str, str]:
    """Return the RTT and link rate cells, "-" unless the node is online.

    The registry keeps the last values of a node that went away, which no
    longer describe its link.
    """
    if node.state != "online":
        return "-", "-"
    rtt = "-" if node.rtt_ms is None else f"{node.rtt_ms:.1f} ms"
    return rtt, format_rate(node.link_rate_bps)


def seconds_ago(timestamp: float, now: float | None = None) -> str:
    """Return "3.2s ago" for the last minute, then the coarser `ago` form."""
    now = now or time.time()
    if timestamp and now - timestamp < 60:
        return f"{max(0.0, now - timestamp):.1f}s ago"
    return ago(timestamp, now)


def planned_return(node: NodeView, now: float | None = None) -> str:
    """Return an offline node's planned return, "12:03:04 (in 5.0s)", else "-"."""
    if node.state != "offline" or node.planned_return is None:
        return "-"
    now = now or time.time()
    stamp = datetime.datetime.fromtimestamp(node.planned_return)
    remaining_s = node.planned_return - now
    if remaining_s >= 0:
        return f"{stamp:%H:%M:%S} (in {remaining_s:.1f}s)"
    return f"{stamp:%H:%M:%S} ({-remaining_s:.1f}s late)"


def format_rate(rate_bps: float | None) -> str:
    """Return a rate in bits per second as "20.0 Mbit/s", or "-" for None."""
    if rate_bps is None:
        return "-"
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if rate_bps >= scale:
            return f"{rate_bps / scale:.1f} {unit}"
    return f"{rate_bps:.0f} bit/s"


def _memory(node: NodeView) -> str:
    if not node.mem_total_bytes:
        return "-"
    gib = 1024**3
    return f"{node.mem_used_bytes / gib:.1f}/{node.mem_total_bytes / gib:.1f} GiB"


def event_line(prefix: str, subject: str, event: dict) -> str:
    """Return one line: time, event kind, node or job name, and details."""
    kind, name = event_kind(prefix, subject)
    stamp = datetime.datetime.fromtimestamp(event.get("time") or time.time())
    return f"{stamp:%H:%M:%S} {kind:<15} {name:<20} {_details(kind, event)}".rstrip()


def event_kind(prefix: str, subject: str) -> tuple[str, str]:
    """Return ("node.<kind>", node) or ("job", job) for an event subject."""
    tokens = subject.removeprefix(f"{prefix}.").split(".")
    match tokens:
        case ["node", node, "evt", *kind] if kind:
            return "node." + ".".join(kind), node
        case ["job", job, "evt"]:
            return "job", job
    return subject, "-"


def _details(kind: str, event: dict) -> str:
    match kind:
        case "job":
            text = f"{event.get('state')} (desired {event.get('desired')})"
            if event.get("node"):
                text += f" on node {event['node']}"
        case "node.link":
            text = _link_details(event)
        case "node.rate":
            text = _rate_details(event)
        case "node.online" | "node.offline" | "node.lost":
            text = ""
        case _ if "action" in event:
            text = f"job {event.get('job')} {event['action']}"
            if event.get("exit_code") is not None:
                text += f" exit code {event['exit_code']}"
        case _:
            skipped = {"v", "time", "node", "message"}
            text = " ".join(f"{k}={v}" for k, v in event.items() if k not in skipped)
    message = event.get("message")
    if not message:
        return text
    return f"{text}; {message}" if text else message


def _link_details(event: dict) -> str:
    """Return "link down (announced), back at 18:03:28" or the link-up line."""
    mode = event.get("mode")
    if event.get("state") == "down":
        text = f"link down ({mode})"
        if event.get("planned_return") is not None:
            text += f", back at {clock_time(event['planned_return'])}"
        return text

    text = "link up"
    if event.get("offline_s") is not None:
        text += f" after {event['offline_s']:.1f} s offline"
    buffered = event.get("buffered_events", 0)
    plural = "" if buffered == 1 else "s"
    text += f" ({mode}), {buffered} event{plural} kept, "
    text += f"{event.get('dropped_events', 0)} dropped"
    if event.get("next_disconnect_at") is not None:
        text += f", next disconnect at {clock_time(event['next_disconnect_at'])}"
    return text


def _rate_details(event: dict) -> str:
    """Return "rate 20.0 Mbit/s (fixed)", with the previous rate when known."""
    text = f"rate {format_rate(event.get('rate_bps'))} ({event.get('source')})"
    if event.get("previous_bps") is not None:
        text += f", was {format_rate(event['previous_bps'])}"
    return text
