"""Placement units: filters that rule nodes out, scorers, and strategies.

Each filter is a named function that returns why a node cannot take a job,
or None. Each scorer returns a number from 0 (busy) to 1 (free) for one
resource. A strategy turns the nodes that pass every filter into a choice:

- `load`: the highest weighted mean of the scorers (CPU, memory,
  accelerators, link rate, jobs);
- `binpack`: the lowest such mean, so busy nodes fill up first;
- `round-robin`: the next node by name after the one chosen last;
- `spread`: a node whose value of a label holds the fewest copies of the
  job, then the node with the fewest copies and jobs, so copies spread over
  sites, racks or boards.

What a node has left for a job is what it offers minus what its jobs
reserve (their `cpus` and `mem_limit`): the larger of what its last heartbeat
reports and what the controller's own records place there, so a job placed
since that heartbeat counts.

`Placer.rank` applies all of it and returns one verdict per node, so a dry
run can show why each node was ruled out or what it scored.
"""

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from controller.registry import NodeRecord, NodeState
from controller.store import JobRecord
from schemas.job import JobSpec, Strategy
from schemas.messages import NodeVerdict, PlacementPlan
from schemas.values import parse_device, parse_duration, parse_size

# A link at or above this rate scores 1; slower links score in proportion.
FULL_LINK_BPS = 500e6
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "cpu": 1.0,
    "memory": 1.0,
    "accelerator": 1.0,
    "link": 0.5,
    "jobs": 1.0,
}
# Desired states whose jobs keep their reservation on their node.
_RESERVING = ("running", "paused")


@dataclass
class Claims:
    """Reservations that the controller's job records place on one node."""

    cpus: float = 0.0
    mem_bytes: int = 0
    # (host port, protocol) -> the job that publishes it.
    ports: dict[tuple[int, str], str] = field(default_factory=dict)
    # Copies per job group; a job without a count is its own group.
    groups: Counter = field(default_factory=Counter)
    jobs: int = 0

    def add(self, spec: JobSpec, group: str) -> None:
        self.cpus += spec.cpus or 0.0
        if spec.mem_limit is not None:
            self.mem_bytes += parse_size(spec.mem_limit)
        for mapping in spec.port_mappings():
            if mapping.host_port is not None:
                self.ports[(mapping.host_port, mapping.protocol)] = spec.name
        self.groups[group] += 1
        self.jobs += 1


def claims_of(records: Iterable[JobRecord]) -> dict[str, Claims]:
    """Return the claims per node of the records that hold a node."""
    claims: dict[str, Claims] = {}
    for record in records:
        if record.node is None or record.desired not in _RESERVING:
            continue
        claims.setdefault(record.node, Claims()).add(
            record.spec, record.group or record.name
        )
    return claims


@dataclass(frozen=True)
class Request:
    """The parts of a job spec the filters compare, parsed once per decision."""

    mem_bytes: int | None
    host_ports: tuple[tuple[int, str], ...]
    device_paths: tuple[str, ...]

    @classmethod
    def of(cls, spec: JobSpec) -> "Request":
        return cls(
            mem_bytes=None if spec.mem_limit is None else parse_size(spec.mem_limit),
            host_ports=tuple(
                (mapping.host_port, mapping.protocol)
                for mapping in spec.port_mappings()
                if mapping.host_port is not None
            ),
            device_paths=tuple(parse_device(entry).host_path for entry in spec.devices),
        )


@dataclass(frozen=True)
class Context:
    """Inputs of a decision besides the node: the time, claims and job group.

    `now` is Unix seconds; `start_s` is how long a job takes to start, so a
    node due to disconnect sooner is ruled out. `request` is the job's
    request, parsed from the spec the filters are given.
    """

    now: float
    start_s: float
    claims: Mapping[str, Claims]
    group: str
    request: Request

    def claims_on(self, node: NodeRecord) -> Claims:
        return self.claims.get(node.name) or _NO_CLAIMS


_NO_CLAIMS = Claims()

Filter = Callable[[JobSpec, NodeRecord, Context], str | None]
Scorer = Callable[[NodeRecord, Claims], float]


def pinned(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    expected = spec.placement.node
    if expected is not None and node.name != expected:
        return f"the job is pinned to node {expected}"
    return None


def online(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    """Rule out a node that is not online or disconnects before the job starts."""
    if node.state is not NodeState.ONLINE:
        return f"node is {node.state.value}"
    planned = node.heartbeat.next_disconnect_at
    if planned is not None and planned - context.now < context.start_s:
        return f"node disconnects in {max(0.0, planned - context.now):.1f} s"
    return None


def device_type(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    expected = spec.placement.device_type
    actual = node.heartbeat.device_type
    if expected and actual.casefold() != expected.casefold():
        return f"device type {actual!r}, not {expected!r}"
    return None


def labels(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    node_labels = node.heartbeat.labels
    for key, value in spec.placement.labels.items():
        actual = node_labels.get(key)
        if actual is None:
            return f"no label {key}, the job expects {key}={value!r}"
        if actual != value:
            return f"label {key}={actual!r}, not {value!r}"
    return None


def devices(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    """Rule out a node without a device path the job maps; pass if it reports none."""
    present = node.heartbeat.devices
    if present is None:
        return None
    for path in context.request.device_paths:
        if path not in present:
            return f"no device {path}"
    return None


def cpu_fit(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    if spec.cpus is None:
        return None
    free = free_cpus(node, context.claims_on(node))
    if free < spec.cpus:
        return f"{free:.2f} CPUs unreserved, the job asks for {spec.cpus:g}"
    return None


def memory_fit(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    requested = context.request.mem_bytes
    if requested is None:
        return None
    free = free_memory(node, context.claims_on(node))
    if free < requested:
        return (
            f"{_mib(free)} MiB of memory unreserved, the job asks for "
            f"{_mib(requested)} MiB"
        )
    return None


def ports_free(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    requested = context.request.host_ports
    if not requested:
        return None
    in_use = {
        (port.host_port, port.protocol): info.job
        for info in node.heartbeat.containers
        for port in info.ports
    }
    in_use |= context.claims_on(node).ports
    for port, protocol in requested:
        owner = in_use.get((port, protocol))
        if owner is not None and owner != spec.name:
            return f"host port {port}/{protocol} is taken by {owner}"
    return None


def link(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    """Rule out a node whose link already misses the job's `migrate_when`."""
    return link_trouble(spec, node, context.now)


def link_trouble(spec: JobSpec, node: NodeRecord, now: float) -> str | None:
    """Return how the node's link misses the job's `migrate_when`, or None."""
    rule = spec.migrate_when
    if rule is None:
        return None
    rtt_above_s = rule.rtt_above_s()
    rtt_s = node_rtt_s(node, now)
    if rtt_above_s is not None and rtt_s is not None and rtt_s > rtt_above_s:
        return f"round trip {rtt_s:.3g} s, above {rtt_above_s:g} s"
    below_bps = rule.bandwidth_below_bps()
    rate_bps = node.link_rate_bps
    if below_bps is not None and rate_bps is not None and rate_bps < below_bps:
        return f"link rate {rate_bps / 1e6:g} Mbit/s, below {below_bps / 1e6:g} Mbit/s"
    return None


def node_rtt_s(node: NodeRecord, now: float) -> float | None:
    """Return the node's round trip in seconds, None when never measured.

    While pings go unanswered, the round trip is at least as long as the
    oldest of them has waited, so a link slower than the ping's wait
    still shows how slow it is.
    """
    rtts = []
    if node.rtt_ms is not None:
        rtts.append(node.rtt_ms / 1000.0)
    if node.unanswered_since is not None:
        rtts.append(now - node.unanswered_since)
    return max(rtts, default=None)


FILTERS: Mapping[str, Filter] = {
    "pinned": pinned,
    "online": online,
    "device_type": device_type,
    "labels": labels,
    "devices": devices,
    "cpu_fit": cpu_fit,
    "memory_fit": memory_fit,
    "ports_free": ports_free,
    "link": link,
}


def free_cpus(node: NodeRecord, claims: Claims) -> float:
    heartbeat = node.heartbeat
    offered = heartbeat.cpu_allocatable or float(heartbeat.cpu_count)
    return offered - max(heartbeat.reserved_cpus, claims.cpus)


def free_memory(node: NodeRecord, claims: Claims) -> int:
    heartbeat = node.heartbeat
    offered = heartbeat.mem_allocatable_bytes or heartbeat.mem_total_bytes
    return offered - max(heartbeat.reserved_mem_bytes, claims.mem_bytes)


def cpu_score(node: NodeRecord, claims: Claims) -> float:
    """Score the smaller of the idle and the unreserved share of the CPUs."""
    heartbeat = node.heartbeat
    idle = 1 - heartbeat.cpu_percent / 100
    offered = heartbeat.cpu_allocatable or float(heartbeat.cpu_count)
    if offered <= 0:
        return _clamp(idle)
    return _clamp(min(idle, free_cpus(node, claims) / offered))


def memory_score(node: NodeRecord, claims: Claims) -> float:
    """Score the smaller of the free and the unreserved share of the memory."""
    heartbeat = node.heartbeat
    if heartbeat.mem_total_bytes <= 0:
        return 0.0
    free = 1 - heartbeat.mem_used_bytes / heartbeat.mem_total_bytes
    offered = heartbeat.mem_allocatable_bytes or heartbeat.mem_total_bytes
    return _clamp(min(free, free_memory(node, claims) / offered))


def accelerator_score(node: NodeRecord, claims: Claims) -> float:
    """Score the mean idle share of the accelerators; none or unknown scores 1."""
    used = [
        accelerator.util_percent
        for accelerator in node.heartbeat.accelerators
        if accelerator.util_percent is not None
    ]
    if not used:
        return 1.0
    return _clamp(1 - sum(used) / len(used) / 100)


def link_score(node: NodeRecord, claims: Claims) -> float:
    """Score the link rate; an unshaped link scores 1."""
    rate = node.link_rate_bps
    if rate is None:
        return 1.0
    return _clamp(rate / FULL_LINK_BPS)


def jobs_score(node: NodeRecord, claims: Claims) -> float:
    """Score 1 for a node without jobs, 1/2 with one, 1/3 with two and so on.

    Jobs count whether or not they set limits, so copies of a job without
    `cpus` or `mem_limit` do not all land on one node.
    """
    return 1 / (1 + max(claims.jobs, node.running_containers))


SCORERS: Mapping[str, Scorer] = {
    "cpu": cpu_score,
    "memory": memory_score,
    "accelerator": accelerator_score,
    "link": link_score,
    "jobs": jobs_score,
}


def weighted_score(
    node: NodeRecord, weights: Mapping[str, float], claims: Claims | None = None
) -> float:
    """Return the weighted mean of the scorers named in `weights`."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    claims = claims or _NO_CLAIMS
    return (
        sum(SCORERS[name](node, claims) * weight for name, weight in weights.items())
        / total
    )


class PlacementConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The controller's placement defaults, the `placement` part of its config.

    `strategy` and `spread_over` apply to jobs that do not choose their own.
    `weights` weigh the scorers of the load and binpack strategies.
    `start_time` is how long a job takes to start: a node due to disconnect
    sooner is ruled out.
    """

    strategy: Strategy = "load"
    spread_over: str | None = None
    weights: dict[str, float] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS)
    )
    start_time: str | float = "10s"

    def __post_init__(self) -> None:
        unknown = sorted(self.weights.keys() - SCORERS.keys())
        if unknown:
            raise ValueError(
                f"unknown weights {unknown}; weigh some of {sorted(SCORERS)}"
            )
        if any(weight < 0 for weight in self.weights.values()):
            raise ValueError("weights must not be negative")
        if sum(self.weights.values()) <= 0:
            raise ValueError("at least one weight must be greater than 0")
        if self.strategy == "spread" and not self.spread_over:
            raise ValueError("the spread strategy needs spread_over, a node label")
        parse_duration(self.start_time)

    def start_s(self) -> float:
        return parse_duration(self.start_time)


@dataclass
class Placer:
    """Ranks nodes for jobs; keeps the round-robin position of committed plans."""

    config: PlacementConfig = field(default_factory=PlacementConfig)
    clock: Callable[[], float] = time.time
    last_chosen: str | None = None

    def strategy_of(self, spec: JobSpec) -> str:
        """Return the job's strategy: its own, spread if it names a label, or the default."""
        placement = spec.placement
        if placement.strategy is not None:
            return placement.strategy
        if placement.spread_over is not None:
            return "spread"
        return self.config.strategy

    def spread_label(self, spec: JobSpec) -> str | None:
        return spec.placement.spread_over or self.config.spread_over

    def rank(
        self,
        spec: JobSpec,
        nodes: list[NodeRecord],
        claims: Mapping[str, Claims] | None = None,
        group: str | None = None,
        after: str | None = None,
    ) -> tuple[NodeRecord | None, list[NodeVerdict]]:
        """Return the chosen node (None when every node is ruled out) and verdicts.

        Raise ValueError for the spread strategy without a label to spread over.

        `claims` are the claims per node (see `claims_of`), `group` the job
        group whose copies the spread strategy counts, the job's name by
        default, and `after` the node round-robin continues from, else the
        last one committed.
        """
        if self.strategy_of(spec) == "spread" and self.spread_label(spec) is None:
            raise ValueError(
                "the spread strategy needs a node label: set placement.spread_over "
                "in the job, or spread_over in the controller's config"
            )
        context = Context(
            self.clock(),
            self.config.start_s(),
            claims or {},
            group or spec.name,
            Request.of(spec),
        )
        verdicts: list[NodeVerdict] = []
        passed: list[tuple[NodeRecord, float]] = []
        for node in sorted(nodes, key=lambda record: record.name):
            reason = _first_reason(spec, node, context)
            if reason is not None:
                verdicts.append(NodeVerdict(name=node.name, filtered=reason))
                continue
            score = weighted_score(node, self.config.weights, context.claims_on(node))
            score = round(score, 4)
            verdicts.append(NodeVerdict(name=node.name, score=score))
            passed.append((node, score))
        if not passed:
            return None, verdicts
        after = after if after is not None else self.last_chosen
        return self._choose(spec, passed, nodes, context, after), verdicts

    def commit(self, plan: PlacementPlan) -> None:
        """Move the round-robin position past a plan that is carried out."""
        placed = [node for node in plan.chosen if node is not None]
        if placed:
            self.last_chosen = placed[-1]

    def plan(
        self,
        spec: JobSpec,
        nodes: list[NodeRecord],
        records: Iterable[JobRecord] = (),
        exclude: Collection[str] = (),
        group: str | None = None,
    ) -> PlacementPlan:
        """Place every copy of `spec`, each counting the copies placed before it.

        The plan changes nothing: `commit` it once it is carried out.

        `records` are the stored jobs, whose reservations count. `exclude`
        names nodes no copy may use, such as a moving job's old node. `group`
        is the job group of the copies, the job's name by default.
        """
        group = group or spec.name
        candidates = [node for node in nodes if node.name not in exclude]
        claims = claims_of(records)
        copies = spec.copies()
        chosen: list[str | None] = []
        explained: list[NodeVerdict] | None = None
        after = self.last_chosen
        for copy in copies:
            node, verdicts = self.rank(copy, candidates, claims, group, after)
            if explained is None or (node is None and None not in chosen):
                explained = verdicts
            chosen.append(node.name if node else None)
            if node is not None:
                claims.setdefault(node.name, Claims()).add(copy, group)
                after = node.name
        return PlacementPlan(
            strategy=self.strategy_of(spec),
            jobs=[copy.name for copy in copies],
            chosen=chosen,
            nodes=explained or [],
        )

    def _choose(
        self,
        spec: JobSpec,
        passed: list[tuple[NodeRecord, float]],
        nodes: list[NodeRecord],
        context: Context,
        after: str | None,
    ) -> NodeRecord:
        # `passed` is in name order, and max and min keep the first of equal
        # keys, so ties go to the first name.
        match self.strategy_of(spec):
            case "load":
                return max(passed, key=lambda pair: pair[1])[0]
            case "binpack":
                return min(passed, key=lambda pair: pair[1])[0]
            case "round-robin":
                later = [node for node, _ in passed if node.name > (after or "")]
                return later[0] if later else passed[0][0]
            case _:
                label = self.spread_label(spec)
                assert label is not None, "rank checks the label first"
                return _spread(passed, nodes, context, label)


def _spread(
    passed: list[tuple[NodeRecord, float]],
    nodes: list[NodeRecord],
    context: Context,
    label: str,
) -> NodeRecord:
    """Choose by copies of the job per label value, then per node, then jobs."""
    copies: Counter = Counter()
    for node in nodes:
        value = node.heartbeat.labels.get(label)
        copies[value] += context.claims_on(node).groups[context.group]

    def key(pair: tuple[NodeRecord, float]) -> tuple[int, int, int]:
        node = pair[0]
        claims = context.claims_on(node)
        return (
            copies[node.heartbeat.labels.get(label)],
            claims.groups[context.group],
            max(claims.jobs, node.running_containers),
        )

    return min(passed, key=key)[0]


def _first_reason(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    for name, check in FILTERS.items():
        reason = check(spec, node, context)
        if reason is not None:
            return f"{name}: {reason}"
    return None


def _mib(size_bytes: int) -> int:
    return size_bytes // 2**20


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))
