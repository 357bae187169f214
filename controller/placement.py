"""Placement units: filters that rule nodes out, scorers, and strategies.

Each filter is a named function that returns why a node cannot take a job,
or None. Each scorer returns a number from 0 (busy) to 1 (free) for one
resource. A strategy turns the nodes that pass every filter into a choice:

- `load`: the highest weighted sum of the scorers (CPU, memory, link rate);
- `binpack`: the lowest such sum, so busy nodes fill up first;
- `round-robin`: the next node by name after the one chosen last;
- `spread`: the node whose value of a label runs the fewest running
  containers, so a job's copies spread over sites, racks or boards.

`rank` applies all of it and returns one verdict per node, so a dry run can
show why each node was ruled out or what it scored.

NOTE: these units are not yet used by `controller submit`, which still places
with `controller.scheduler.place`.
"""

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controller.registry import NodeRecord, NodeState
from schemas.job import JobSpec
from schemas.values import parse_size

# A link at or above this rate scores 1; slower links score in proportion.
FULL_LINK_BPS = 500e6
DEFAULT_WEIGHTS: Mapping[str, float] = {"cpu": 1.0, "memory": 1.0, "link": 0.5}
STRATEGIES = ("load", "binpack", "round-robin", "spread")


@dataclass(frozen=True)
class Verdict:
    """One node's result: the filter reason that ruled it out, or its score."""

    node: str
    filtered: str | None
    score: float | None


@dataclass(frozen=True)
class Context:
    """The time of the decision (Unix seconds) and a job's expected start time."""

    now: float
    start_s: float


Filter = Callable[[JobSpec, NodeRecord, Context], str | None]
Scorer = Callable[[NodeRecord], float]


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
        if node_labels.get(key) != value:
            return f"label {key}={node_labels.get(key)!r}, not {value!r}"
    return None


def cpu_fit(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    if spec.cpus is None:
        return None
    free = free_cpus(node)
    if free < spec.cpus:
        return f"{free:.2f} CPUs free, the job asks for {spec.cpus:g}"
    return None


def memory_fit(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    if spec.mem_limit is None:
        return None
    requested = parse_size(spec.mem_limit)
    heartbeat = node.heartbeat
    free = heartbeat.mem_total_bytes - heartbeat.mem_used_bytes
    if free < requested:
        return f"{free} bytes of memory free, the job asks for {requested}"
    return None


def ports_free(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    in_use = {
        (port.host_port, port.protocol)
        for info in node.heartbeat.containers
        if info.job != spec.name
        for port in info.ports
    }
    for mapping in spec.port_mappings():
        if (mapping.host_port, mapping.protocol) in in_use:
            return f"host port {mapping.host_port}/{mapping.protocol} is in use"
    return None


FILTERS: Mapping[str, Filter] = {
    "online": online,
    "device_type": device_type,
    "labels": labels,
    "cpu_fit": cpu_fit,
    "memory_fit": memory_fit,
    "ports_free": ports_free,
}


def free_cpus(node: NodeRecord) -> float:
    heartbeat = node.heartbeat
    return heartbeat.cpu_count * (1 - heartbeat.cpu_percent / 100)


def cpu_score(node: NodeRecord) -> float:
    return _clamp(1 - node.heartbeat.cpu_percent / 100)


def memory_score(node: NodeRecord) -> float:
    heartbeat = node.heartbeat
    if heartbeat.mem_total_bytes <= 0:
        return 0.0
    return _clamp(1 - heartbeat.mem_used_bytes / heartbeat.mem_total_bytes)


def link_score(node: NodeRecord) -> float:
    """Score the link rate; an unshaped link scores 1."""
    rate = node.heartbeat.link_rate_bps
    if rate is None:
        return 1.0
    return _clamp(rate / FULL_LINK_BPS)


SCORERS: Mapping[str, Scorer] = {
    "cpu": cpu_score,
    "memory": memory_score,
    "link": link_score,
}


def weighted_score(node: NodeRecord, weights: Mapping[str, float]) -> float:
    """Return the weighted mean of the scorers named in `weights`."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return sum(SCORERS[name](node) * weight for name, weight in weights.items()) / total


@dataclass
class Placer:
    """Ranks nodes for a job; keeps the round-robin position between calls."""

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    # How long a job takes to start; a node due to disconnect sooner is ruled out.
    start_s: float = 10.0
    clock: Callable[[], float] = time.time
    last_chosen: str | None = None

    def rank(
        self,
        spec: JobSpec,
        nodes: list[NodeRecord],
        strategy: str = "load",
        spread_label: str | None = None,
    ) -> tuple[NodeRecord | None, list[Verdict]]:
        """Return the chosen node (None when every node is ruled out) and verdicts."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
        context = Context(self.clock(), self.start_s)
        verdicts: list[Verdict] = []
        passed: list[tuple[NodeRecord, float]] = []
        for node in sorted(nodes, key=lambda record: record.name):
            reason = _first_reason(spec, node, context)
            if reason is not None:
                verdicts.append(Verdict(node.name, reason, None))
                continue
            score = weighted_score(node, self.weights)
            verdicts.append(Verdict(node.name, None, score))
            passed.append((node, score))
        if not passed:
            return None, verdicts
        chosen = self._choose(passed, nodes, strategy, spread_label)
        self.last_chosen = chosen.name
        return chosen, verdicts

    def _choose(
        self,
        passed: list[tuple[NodeRecord, float]],
        nodes: list[NodeRecord],
        strategy: str,
        spread_label: str | None,
    ) -> NodeRecord:
        # `passed` is in name order, and max and min keep the first of equal
        # keys, so ties go to the first name.
        if strategy == "load":
            return max(passed, key=lambda pair: pair[1])[0]
        if strategy == "binpack":
            return min(passed, key=lambda pair: pair[1])[0]
        if strategy == "round-robin":
            later = [node for node, _ in passed if node.name > (self.last_chosen or "")]
            return later[0] if later else passed[0][0]
        if spread_label is None:
            raise ValueError("the spread strategy needs the label to spread over")
        running = Counter(
            node.heartbeat.labels.get(spread_label)
            for node in nodes
            for _ in range(node.running_containers)
        )
        return min(
            passed,
            key=lambda pair: running[pair[0].heartbeat.labels.get(spread_label)],
        )[0]


def _first_reason(spec: JobSpec, node: NodeRecord, context: Context) -> str | None:
    for name, check in FILTERS.items():
        reason = check(spec, node, context)
        if reason is not None:
            return f"{name}: {reason}"
    return None


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))
