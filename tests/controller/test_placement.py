"""Placement filters, scorers and strategies, table by table."""

import msgspec
import pytest

from controller.placement import (
    Context,
    Placer,
    cpu_fit,
    device_type,
    labels,
    link_score,
    memory_fit,
    online,
    ports_free,
)
from controller.registry import NodeRecord, NodeState
from schemas.job import JobSpec
from schemas.messages import ContainerInfo, PublishedPort
from tests.controller.helpers import heartbeat

NOW = 1000.0
GIB = 1024**3


def spec(**fields) -> JobSpec:
    return msgspec.convert({"name": "web", "image": "busybox", **fields}, JobSpec)


def node(
    name: str,
    state: NodeState = NodeState.ONLINE,
    mem_used: int = 0,
    ports: tuple[int, ...] = (),
    next_disconnect_at: float | None = None,
    cpu_count: int = 4,
    **fields,
) -> NodeRecord:
    beat = heartbeat(name, **fields)
    published = [
        PublishedPort(
            container_port=80, protocol="tcp", host_ip="127.0.0.1", host_port=port
        )
        for port in ports
    ]
    containers = list(beat.containers)
    if published:
        containers.append(
            ContainerInfo(
                id="c1", name="other", job="other", node=name, image="i",
                state="running", ports=published,
            )
        )  # fmt: skip
    beat = msgspec.structs.replace(
        beat,
        containers=containers,
        cpu_count=cpu_count,
        mem_total_bytes=8 * GIB,
        mem_used_bytes=mem_used,
        next_disconnect_at=next_disconnect_at,
    )
    return NodeRecord(name, beat, NOW, state)


CONTEXT = Context(now=NOW, start_s=10.0)


@pytest.mark.parametrize(
    ("check", "job", "record", "reason"),
    [
        (online, spec(), node("a"), None),
        (online, spec(), node("a", NodeState.LOST), "node is lost"),
        (online, spec(), node("a", next_disconnect_at=NOW + 5), "disconnects in 5.0 s"),
        (online, spec(), node("a", next_disconnect_at=NOW + 60), None),
        (device_type, spec(placement={"device_type": "atlas_i"}), node("a", device_type="ATLAS_I"), None),
        (device_type, spec(placement={"device_type": "RK3588"}), node("a"), "device type 'X86', not 'RK3588'"),
        (labels, spec(placement={"labels": {"site": "lab"}}), node("a", labels={"site": "lab"}), None),
        (labels, spec(placement={"labels": {"site": "lab"}}), node("a"), "label site=None, not 'lab'"),
        (cpu_fit, spec(), node("a", cpu_percent=100.0), None),
        (cpu_fit, spec(cpus=2), node("a", cpu_percent=25.0), None),
        (cpu_fit, spec(cpus=2), node("a", cpu_percent=75.0), "1.00 CPUs free, the job asks for 2"),
        (memory_fit, spec(mem_limit="1g"), node("a", mem_used=6 * GIB), None),
        (memory_fit, spec(mem_limit="4g"), node("a", mem_used=6 * GIB), "the job asks for 4294967296"),
        (ports_free, spec(ports=["127.0.0.1:8080:80"]), node("a", ports=(9090,)), None),
        (ports_free, spec(ports=["127.0.0.1:8080:80"]), node("a", ports=(8080,)), "host port 8080/tcp is in use"),
    ],
)  # fmt: skip
def test_filter_table(check, job, record, reason):
    result = check(job, record, CONTEXT)

    if reason is None:
        assert result is None
    else:
        assert reason in result


@pytest.mark.parametrize(
    ("rate", "score"), [(None, 1.0), (500e6, 1.0), (50e6, 0.1), (1e9, 1.0)]
)
def test_link_score_table(rate, score):
    assert link_score(node("a", link_rate_bps=rate)) == pytest.approx(score)


def placer() -> Placer:
    return Placer(clock=lambda: NOW)


def test_load_picks_the_freest_node():
    nodes = [node("a", cpu_percent=80.0), node("b", cpu_percent=10.0)]

    chosen, verdicts = placer().rank(spec(), nodes, "load")

    assert chosen.name == "b"
    assert [v.node for v in verdicts] == ["a", "b"]
    assert verdicts[1].score > verdicts[0].score


def test_binpack_picks_the_busiest_node():
    nodes = [node("a", cpu_percent=80.0), node("b", cpu_percent=10.0)]

    chosen, _ = placer().rank(spec(), nodes, "binpack")

    assert chosen.name == "a"


def test_ties_go_to_the_first_name():
    nodes = [node("b"), node("a"), node("c")]

    assert placer().rank(spec(), nodes, "load")[0].name == "a"
    assert placer().rank(spec(), nodes, "binpack")[0].name == "a"


def test_round_robin_cycles_by_name():
    nodes = [node("c"), node("a"), node("b")]
    rotation = placer()

    chosen = [rotation.rank(spec(), nodes, "round-robin")[0].name for _ in range(4)]

    assert chosen == ["a", "b", "c", "a"]


def test_spread_picks_the_emptiest_label_value():
    nodes = [
        node("a", labels={"rack": "r1"}, running=2),
        node("b", labels={"rack": "r1"}),
        node("c", labels={"rack": "r2"}, running=1),
    ]

    chosen, _ = placer().rank(spec(), nodes, "spread", spread_label="rack")

    assert chosen.name == "c"


def test_filtered_nodes_carry_reasons():
    nodes = [node("a", NodeState.OFFLINE), node("b", device_type="RK3588")]
    job = spec(placement={"device_type": "RK3588"})

    chosen, verdicts = placer().rank(job, nodes, "load")

    assert chosen.name == "b"
    assert verdicts[0].filtered == "online: node is offline"
    assert verdicts[0].score is None
    assert verdicts[1].filtered is None


@pytest.mark.parametrize("strategy", ["load", "binpack", "round-robin"])
def test_empty_fleet_chooses_nothing(strategy):
    chosen, verdicts = placer().rank(spec(), [], strategy)

    assert chosen is None
    assert verdicts == []


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown strategy 'random'"):
        placer().rank(spec(), [node("a")], "random")


def test_spread_needs_a_label():
    with pytest.raises(ValueError, match="needs the label"):
        placer().rank(spec(), [node("a")], "spread")
