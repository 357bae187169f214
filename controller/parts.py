"""The parts that the API handlers and the reconciler share."""

from dataclasses import dataclass

from controller.agents import AgentClient
from controller.events import EventPublisher
from controller.locks import JobLocks
from controller.registry import NodeRegistry
from controller.store import JobStore


@dataclass(frozen=True)
class Parts:
    """Job store, node registry, agent client, event publisher and job locks."""

    store: JobStore
    registry: NodeRegistry
    agents: AgentClient
    events: EventPublisher
    locks: JobLocks
