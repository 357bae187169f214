"""Scheduling: the placement units applied to the registry and the job store.

`plan` returns where each copy of a job goes and why, which is all a dry run
needs. `place` turns a plan into the nodes of the copies, or an error that explains
why no node fits; only `place` moves the round-robin position.
"""

from collections import Counter
from collections.abc import Collection

from controller.errors import (
    InvalidRequestError,
    NodeOfflineError,
    NoMatchingNodeError,
    NotFoundError,
)
from controller.placement import PlacementConfig, Placer
from controller.registry import NodeRegistry, NodeState
from controller.store import JobRecord
from schemas.job import JobSpec
from schemas.messages import NodeVerdict, PlacementPlan

# Reasons a no-fit error lists by filter before it only counts the rest.
_LISTED_REASONS = 3


class Scheduler:
    """Places jobs on the registry's nodes with one `Placer`."""

    def __init__(self, registry: NodeRegistry, config: PlacementConfig) -> None:
        self._registry = registry
        self.placer = Placer(config, clock=registry.clock)

    def plan(
        self,
        spec: JobSpec,
        records: list[JobRecord],
        exclude: Collection[str] = (),
        group: str | None = None,
    ) -> PlacementPlan:
        """Place every copy of `spec` among the registered nodes not in `exclude`.

        The records of the job's own copies do not count against it.
        """
        names = set(spec.copy_names())
        others = [record for record in records if record.name not in names]
        try:
            return self.placer.plan(
                spec, self._registry.nodes(), others, exclude, group
            )
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None

    def place(
        self,
        spec: JobSpec,
        records: list[JobRecord],
        exclude: Collection[str] = (),
        group: str | None = None,
    ) -> list[str]:
        """Return the node of each copy, or raise why some copy fits nowhere."""
        if spec.placement.node is not None:
            self._check_pinned(spec.placement.node)
        plan = self.plan(spec, records, exclude, group)
        if None in plan.chosen:
            raise NoMatchingNodeError(no_fit_message(spec, plan))
        self.placer.commit(plan)
        return [node for node in plan.chosen if node is not None]

    def _check_pinned(self, name: str) -> None:
        node = self._registry.get(name)
        if node is None:
            raise NotFoundError(
                f"node {name!r} is not registered; see `controller nodes` for the "
                "nodes whose agents send heartbeats"
            )
        if node.state is not NodeState.ONLINE:
            raise NodeOfflineError(
                f"node {name!r} is {node.state}: its agent sends no heartbeats; "
                "start node-agent on it, wait for it to return, or choose another node"
            )


def no_fit_message(spec: JobSpec, plan: PlacementPlan) -> str:
    """Say why no node takes a copy of the job: reasons counted by filter."""
    placed = sum(1 for node in plan.chosen if node is not None)
    copies = ""
    if len(plan.chosen) > 1:
        copies = f" ({placed} of {len(plan.chosen)} copies fit)"
    if not plan.nodes:
        return (
            f"no node can take job {spec.name}{copies}: no node is registered; "
            "start node-agent on a node"
        )
    return (
        f"no node can take job {spec.name}{copies}: {_reasons(plan.nodes)}; run "
        "`controller submit --dry-run FILE` for each node's reason"
    )


def _reasons(verdicts: list[NodeVerdict]) -> str:
    """Return each filter's count of ruled-out nodes, with the first node's reason."""
    examples: dict[str, NodeVerdict] = {}
    counts: Counter = Counter()
    for verdict in verdicts:
        if verdict.filtered is None:
            continue
        name, _, reason = verdict.filtered.partition(": ")
        examples.setdefault(name, NodeVerdict(name=verdict.name, filtered=reason))
        counts[name] += 1
    parts = []
    for name, count in counts.most_common(_LISTED_REASONS):
        example = examples[name]
        nodes = "node" if count == 1 else "nodes"
        parts.append(
            f"{name} rules out {count} {nodes} ({example.name}: {example.filtered})"
        )
    listed = sum(count for _, count in counts.most_common(_LISTED_REASONS))
    if listed < counts.total():
        parts.append(f"other filters rule out {counts.total() - listed} more")
    return "; ".join(parts)
