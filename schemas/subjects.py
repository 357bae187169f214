"""Builders for every NATS subject the system uses.

Node and job names are validated before they become subject tokens, so a
name can never add a token or a wildcard.
"""

from schemas.names import check_name

DEFAULT_PREFIX = "dsched"
API_VERBS = (
    "submit",
    "jobs",
    "nodes",
    "start",
    "stop",
    "pause",
    "unpause",
    "remove",
    "inspect",
    "logs",
)


class Subjects:
    """Subject builders under one prefix (`dsched` unless configured)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        for token in prefix.split("."):
            check_name(token, "subject prefix token")
        self.prefix = prefix

    def node_cmd(self, node: str) -> str:
        return f"{self.prefix}.node.{check_name(node, 'node name')}.cmd"

    def node_hb(self, node: str) -> str:
        return f"{self.prefix}.node.{check_name(node, 'node name')}.hb"

    def node_evt(self, node: str, kind: str) -> str:
        node = check_name(node, "node name")
        return f"{self.prefix}.node.{node}.evt.{check_name(kind, 'event kind')}"

    def job_evt(self, job: str) -> str:
        return f"{self.prefix}.job.{check_name(job, 'job name')}.evt"

    def api(self, verb: str) -> str:
        if verb not in API_VERBS:
            raise ValueError(f"unknown API verb {verb!r}; expected one of {API_VERBS}")
        return f"{self.prefix}.api.{verb}"

    @property
    def all_heartbeats(self) -> str:
        return f"{self.prefix}.node.*.hb"

    @property
    def all_node_events(self) -> str:
        return f"{self.prefix}.node.*.evt.>"

    def all_node_evt(self, kind: str) -> str:
        """Return the subject of one event kind of every node, e.g. `link`."""
        return f"{self.prefix}.node.*.evt.{check_name(kind, 'event kind')}"

    @property
    def all_job_events(self) -> str:
        return f"{self.prefix}.job.*.evt"

    @property
    def api_wildcard(self) -> str:
        return f"{self.prefix}.api.*"
