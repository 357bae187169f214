"""The job spec: one container, described with Compose's key names."""

from typing import Literal

import msgspec

from schemas import values
from schemas.names import check_name

Scalar = str | int


class FieldError(ValueError):
    """A value that failed validation, with the path of its field in the spec.

    msgspec keeps this exception as the cause of its ValidationError, so the
    job-file loader can point at the field and its line.
    """

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _check(path: tuple[str | int, ...], check, value) -> None:
    try:
        check(value)
    except FieldError:
        raise
    except ValueError as exc:
        raise FieldError(path, str(exc)) from None


_HEALTHCHECK_KINDS = ("NONE", "CMD", "CMD-SHELL")


class _Spec(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    pass


class Ulimit(_Spec):
    soft: int
    hard: int


class Healthcheck(_Spec):
    test: str | list[str] | None = None
    interval: str | None = None
    timeout: str | None = None
    start_period: str | None = None
    retries: int | None = None
    disable: bool = False

    def __post_init__(self) -> None:
        for field in ("interval", "timeout", "start_period"):
            if getattr(self, field) is not None:
                _check((field,), values.parse_duration, getattr(self, field))
        test = self.test
        if isinstance(test, list) and test and test[0] not in _HEALTHCHECK_KINDS:
            raise FieldError(
                ("test",),
                f"invalid healthcheck test {self.test!r}: a list starts with "
                "CMD, CMD-SHELL or NONE",
            )


Strategy = Literal["load", "binpack", "round-robin", "spread"]
STRATEGIES: tuple[str, ...] = Strategy.__args__
# The largest `count` a job may set.
MAX_COUNT = 1000


class Placement(_Spec):
    """The nodes a job may run on, and how the controller picks among them.

    `strategy` None means the controller's default, or spread when
    `spread_over` is set. `spread_over` names the node label whose values the
    spread strategy spreads copies over, the controller's by default.
    """

    node: str | None = None
    device_type: str | None = None
    labels: dict[str, str] = {}
    strategy: Strategy | None = None
    spread_over: str | None = None

    def __post_init__(self) -> None:
        if self.node is not None:
            _check(("node",), lambda node: check_name(node, "node name"), self.node)
            if self.strategy is not None:
                raise FieldError(
                    ("strategy",),
                    "a strategy has no effect on a job pinned with placement.node; "
                    "remove one of them",
                )


class MigrateWhen(_Spec):
    """The link thresholds past which a job leaves a node that stays online.

    The job moves when the round trip to its node stays above `rtt_above`, or
    the node's link rate below `bandwidth_below`, for `for` seconds.
    """

    rtt_above: str | float | None = None
    bandwidth_below: str | float | None = None
    for_: str | float = msgspec.field(default="30s", name="for")

    def __post_init__(self) -> None:
        if self.rtt_above is None and self.bandwidth_below is None:
            raise FieldError(
                (),
                "migrate_when needs rtt_above (a duration such as 10s), "
                "bandwidth_below (a rate such as 1Mbit) or both",
            )
        if self.rtt_above is not None:
            _check(("rtt_above",), _check_positive_duration, self.rtt_above)
        if self.bandwidth_below is not None:
            _check(
                ("bandwidth_below",),
                lambda rate: values.parse_rate(str(rate), unit_required=True),
                self.bandwidth_below,
            )
        _check(("for",), values.parse_duration, self.for_)

    def rtt_above_s(self) -> float | None:
        if self.rtt_above is None:
            return None
        return values.parse_duration(self.rtt_above)

    def bandwidth_below_bps(self) -> float | None:
        if self.bandwidth_below is None:
            return None
        return values.parse_rate(str(self.bandwidth_below))

    def for_s(self) -> float:
        return values.parse_duration(self.for_)


class JobSpec(_Spec):
    """A job: one container and where it may run.

    Field names and value syntaxes follow the Compose file format, so a
    service from a compose.yaml carries over unchanged. Three keys are not
    Compose's. `reschedule_after`, seconds or a duration such as "30s": when
    the job's node has been offline or lost for longer than that, the
    controller moves a running job to another node that matches its
    placement, and removes the old container when the old node returns.
    `migrate_when` moves the job off an online node whose link degrades (see
    MigrateWhen). Both are off when absent, and a job pinned with
    `placement.node` cannot set them. `count` runs that many copies, named
    NAME-0, NAME-1 and so on, each a job of its own.
    """

    name: str
    image: str
    command: str | list[str] | None = None
    entrypoint: str | list[str] | None = None
    environment: dict[str, Scalar | None] | list[str] = {}
    privileged: bool = False
    devices: list[str] = []
    volumes: list[str] = []
    ports: list[Scalar] = []
    tty: bool = False
    stdin_open: bool = False
    network_mode: str | None = None
    restart: str = "no"
    cpus: float | None = None
    mem_limit: Scalar | None = None
    labels: dict[str, str] | list[str] = {}
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    cap_add: list[str] = []
    cap_drop: list[str] = []
    shm_size: Scalar | None = None
    extra_hosts: list[str] | dict[str, str] = []
    ulimits: dict[str, int | Ulimit] = {}
    healthcheck: Healthcheck | None = None
    stop_signal: str | None = None
    stop_grace_period: str | None = None
    placement: Placement = msgspec.field(default_factory=Placement)
    reschedule_after: str | float | None = None
    migrate_when: MigrateWhen | None = None
    count: int = 1

    def __post_init__(self) -> None:
        _check(("name",), lambda name: check_name(name, "job name"), self.name)
        if not self.image.strip():
            raise FieldError(("image",), "image must not be empty")
        _check(("command",), values.argv, self.command)
        _check(("entrypoint",), values.argv, self.entrypoint)
        _check(("environment",), lambda _: self.environment_dict(), None)
        _check(("labels",), lambda _: self.labels_dict(), None)
        _check(("restart",), values.parse_restart, self.restart)
        self._check_lists()
        self._check_limits()
        self._check_moves()

    def _check_lists(self) -> None:
        for index, device in enumerate(self.devices):
            _check(("devices", index), values.parse_device, device)
        for index, volume in enumerate(self.volumes):
            _check(("volumes", index), values.check_volume, volume)
        published = set()
        for index, port in enumerate(self.ports):
            _check(("ports", index), values.parse_port, port)
            mapping = values.parse_port(port)
            key = (mapping.host_ip, mapping.host_port, mapping.protocol)
            if mapping.host_port is not None and key in published:
                raise FieldError(
                    ("ports", index), f"host port {port!r} is published twice"
                )
            published.add(key)
        _check(("extra_hosts",), lambda _: self.extra_host_pairs(), None)

    def _check_limits(self) -> None:
        if self.cpus is not None and self.cpus <= 0:
            raise FieldError(
                ("cpus",), f"invalid cpus {self.cpus!r}: must be greater than 0"
            )
        if self.mem_limit is not None:
            _check(("mem_limit",), values.parse_size, self.mem_limit)
        if self.shm_size is not None:
            _check(("shm_size",), values.parse_size, self.shm_size)
        if self.stop_grace_period is not None:
            _check(
                ("stop_grace_period",), values.parse_duration, self.stop_grace_period
            )

    def _check_moves(self) -> None:
        if self.reschedule_after is not None:
            _check(
                ("reschedule_after",), _check_reschedule_after, self.reschedule_after
            )
        for key in ("reschedule_after", "migrate_when"):
            if getattr(self, key) is not None and self.placement.node is not None:
                raise FieldError(
                    (key,),
                    f"{key} has no effect on a job pinned with placement.node; "
                    "remove one of them",
                )
        if not 1 <= self.count <= MAX_COUNT:
            raise FieldError(
                ("count",),
                f"invalid count {self.count!r}: must be from 1 to {MAX_COUNT}",
            )
        if self.count > 1:
            last = f"{self.name}-{self.count - 1}"
            _check(("name",), lambda name: check_name(name, "copy name"), last)

    def copy_names(self) -> list[str]:
        """Return the job names of the copies: the name itself for one copy."""
        if self.count == 1:
            return [self.name]
        return [f"{self.name}-{index}" for index in range(self.count)]

    def copies(self) -> list["JobSpec"]:
        """Return the spec of each copy, named by `copy_names`: itself for one copy."""
        if self.count == 1:
            return [self]
        return [
            msgspec.structs.replace(self, name=name, count=1)
            for name in self.copy_names()
        ]

    def environment_dict(self) -> dict[str, str]:
        return values.key_value_pairs(self.environment, "environment")

    def labels_dict(self) -> dict[str, str]:
        return values.key_value_pairs(self.labels, "label")

    def port_mappings(self) -> list[values.PortMapping]:
        return [values.parse_port(port) for port in self.ports]

    def stop_grace_s(self) -> float | None:
        if self.stop_grace_period is None:
            return None
        return values.parse_duration(self.stop_grace_period)

    def reschedule_after_s(self) -> float | None:
        if self.reschedule_after is None:
            return None
        return values.parse_duration(self.reschedule_after)

    def extra_host_pairs(self) -> list[tuple[str, str]]:
        """Return (host, address) pairs from `host:ip` / `host=ip` entries or a map."""
        if isinstance(self.extra_hosts, dict):
            return list(self.extra_hosts.items())
        pairs = []
        for entry in self.extra_hosts:
            separator = "=" if "=" in entry else ":"
            host, sep, address = entry.partition(separator)
            if not sep or not host or not address:
                raise ValueError(
                    f"invalid extra_hosts entry {entry!r}: expected HOST:IP"
                )
            pairs.append((host, address))
        return pairs


def _check_positive_duration(value: str | float) -> None:
    if values.parse_duration(value) <= 0:
        raise ValueError(f"invalid duration {value!r}: must be greater than 0")


def _check_reschedule_after(value: str | float) -> None:
    if values.parse_duration(value) <= 0:
        raise ValueError(
            f"invalid reschedule_after {value!r}: must be greater than 0; leave "
            "the key out to keep the job on its node"
        )


DesiredState = Literal["running", "paused", "stopped", "removed"]
