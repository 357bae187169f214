"""Placement filters, scorers and strategies, table by table."""

import msgspec
import pytest

from controller.placement import (
    Claims,
    Context,
    PlacementConfig,
    Placer,
    Request,
    accelerator_score,
    claims_of,
    cpu_fit,
    cpu_score,
    device_type,
    devices,
    jobs_score,
    labels,
    link,
    link_score,
    memory_fit,
    memory_score,
    online,
    pinned,
    ports_free,
    weighted_score,
)
from controller.registry import NodeRecord, NodeState
from controller.store import JobRecord
from schemas.job import JobSpec
from schemas.messages import Accelerator, ContainerInfo, PublishedPort
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
    reserved_cpus: float = 0.0,
    device_paths: list[str] | None = None,
    accelerators: tuple[float | None, ...] = (),
    rtt_ms: float | None = None,
    unanswered_since: float | None = None,
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
        reserved_cpus=reserved_cpus,
        devices=device_paths,
        accelerators=[
            Accelerator(kind="npu", index=index, util_percent=util)
            for index, util in enumerate(accelerators)
        ],
    )
    record = NodeRecord(name, beat, NOW, state)
    record.link_rate_bps = beat.link_rate_bps
    record.rtt_ms = rtt_ms
    record.unanswered_since = unanswered_since
    return record


NO_CLAIMS: dict[str, Claims] = {}


def claimed(**claims: Claims) -> dict[str, Claims]:
    return claims


def claim(job: JobSpec) -> Claims:
    claims = Claims()
    claims.add(job, job.name)
    return claims


SLOW = {"migrate_when": {"rtt_above": "10s", "bandwidth_below": "1Mbit"}}


@pytest.mark.parametrize(
    ("check", "job", "record", "claims", "reason"),
    [
        (pinned, spec(placement={"node": "a"}), node("a"), NO_CLAIMS, None),
        (pinned, spec(placement={"node": "b"}), node("a"), NO_CLAIMS, "pinned to node b"),
        (online, spec(), node("a"), NO_CLAIMS, None),
        (online, spec(), node("a", NodeState.LOST), NO_CLAIMS, "node is lost"),
        (online, spec(), node("a", next_disconnect_at=NOW + 5), NO_CLAIMS, "disconnects in 5.0 s"),
        (online, spec(), node("a", next_disconnect_at=NOW + 60), NO_CLAIMS, None),
        (device_type, spec(placement={"device_type": "atlas_i"}), node("a", device_type="ATLAS_I"), NO_CLAIMS, None),
        (device_type, spec(placement={"device_type": "RK3588"}), node("a"), NO_CLAIMS, "device type 'X86', not 'RK3588'"),
        (labels, spec(placement={"labels": {"site": "lab"}}), node("a", labels={"site": "lab"}), NO_CLAIMS, None),
        (labels, spec(placement={"labels": {"site": "lab"}}), node("a"), NO_CLAIMS, "no label site, the job expects site='lab'"),
        (devices, spec(devices=["/dev/davinci0"]), node("a", device_paths=["/dev/davinci0"]), NO_CLAIMS, None),
        (devices, spec(devices=["/dev/davinci0:/dev/npu"]), node("a", device_paths=["/dev/null"]), NO_CLAIMS, "no device /dev/davinci0"),
        (devices, spec(devices=["/dev/davinci0"]), node("a"), NO_CLAIMS, None),
        (cpu_fit, spec(), node("a", reserved_cpus=4.0), NO_CLAIMS, None),
        (cpu_fit, spec(cpus=2), node("a", cpu_percent=95.0), NO_CLAIMS, None),
        (cpu_fit, spec(cpus=2), node("a", reserved_cpus=3.0), NO_CLAIMS, "1.00 CPUs unreserved, the job asks for 2"),
        (cpu_fit, spec(cpus=2), node("a", reserved_cpus=1.0), claimed(a=claim(spec(name="db", cpus=3))), "1.00 CPUs unreserved"),
        (memory_fit, spec(mem_limit="1g"), node("a"), claimed(a=claim(spec(name="db", mem_limit="6g"))), None),
        (memory_fit, spec(mem_limit="4g"), node("a"), claimed(a=claim(spec(name="db", mem_limit="6g"))), "2048 MiB of memory unreserved, the job asks for 4096 MiB"),
        (ports_free, spec(ports=["127.0.0.1:8080:80"]), node("a", ports=(9090,)), NO_CLAIMS, None),
        (ports_free, spec(ports=["127.0.0.1:8080:80"]), node("a", ports=(8080,)), NO_CLAIMS, "host port 8080/tcp is taken by other"),
        (ports_free, spec(ports=["8080:80"]), node("a"), claimed(a=claim(spec(name="db", ports=["8080:80"]))), "taken by db"),
        (ports_free, spec(ports=["8080:80"]), node("a"), claimed(a=claim(spec(ports=["8080:80"]))), None),
        (link, spec(), node("a", link_rate_bps=1e3, rtt_ms=60e3), NO_CLAIMS, None),
        (link, spec(**SLOW), node("a", link_rate_bps=5e6, rtt_ms=40.0), NO_CLAIMS, None),
        (link, spec(**SLOW), node("a", link_rate_bps=5e5), NO_CLAIMS, "link rate 0.5 Mbit/s, below 1 Mbit/s"),
        (link, spec(**SLOW), node("a", rtt_ms=12e3), NO_CLAIMS, "round trip 12 s, above 10 s"),
        (link, spec(**SLOW), node("a", rtt_ms=40.0, unanswered_since=NOW - 15), NO_CLAIMS, "round trip 15 s"),
    ],
)  # fmt: skip
def test_filter_table(check, job, record, claims, reason):
    context = Context(NOW, 10.0, claims, job.name, Request.of(job))

    result = check(job, record, context)

    if reason is None:
        assert result is None
    else:
        assert reason in result


@pytest.mark.parametrize(
    ("rate", "score"), [(None, 1.0), (500e6, 1.0), (50e6, 0.1), (1e9, 1.0)]
)
def test_link_score_table(rate, score):
    assert link_score(node("a", link_rate_bps=rate), Claims()) == pytest.approx(score)


@pytest.mark.parametrize(
    ("utils", "score"),
    [
        ((), 1.0),
        ((None,), 1.0),
        ((50.0,), 0.5),
        ((20.0, 60.0, None), 0.6),
        ((120.0,), 0.0),
    ],
)
def test_accelerator_score_table(utils, score):
    record = node("a", accelerators=utils)

    assert accelerator_score(record, Claims()) == pytest.approx(score)


@pytest.mark.parametrize(
    ("cpu_percent", "reserved", "score"),
    [(0.0, 0.0, 1.0), (50.0, 0.0, 0.5), (0.0, 3.0, 0.25), (90.0, 1.0, 0.1)],
)
def test_cpu_score_takes_the_smaller_free_share(cpu_percent, reserved, score):
    record = node("a", cpu_percent=cpu_percent, reserved_cpus=reserved)

    assert cpu_score(record, Claims()) == pytest.approx(score)


def test_memory_score_counts_claims():
    claims = claim(spec(name="db", mem_limit="6g"))

    assert memory_score(node("a", mem_used=GIB), claims) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("running", "claimed_jobs", "score"), [(0, 0, 1.0), (1, 0, 0.5), (1, 3, 0.25)]
)
def test_jobs_score_table(running, claimed_jobs, score):
    claims = Claims()
    for index in range(claimed_jobs):
        claims.add(spec(name=f"job{index}"), f"job{index}")

    assert jobs_score(node("a", running=running), claims) == pytest.approx(score)


def test_weighted_score_is_a_weighted_mean():
    record = node("a", cpu_percent=50.0, mem_used=2 * GIB)

    score = weighted_score(record, {"cpu": 1.0, "memory": 3.0})

    assert score == pytest.approx((0.5 + 3 * 0.75) / 4)


def placer(strategy="load", **config) -> Placer:
    return Placer(PlacementConfig(strategy=strategy, **config), clock=lambda: NOW)


def test_load_picks_the_freest_node():
    nodes = [node("a", cpu_percent=80.0), node("b", cpu_percent=10.0)]

    chosen, verdicts = placer().rank(spec(), nodes)

    assert chosen.name == "b"
    assert [v.name for v in verdicts] == ["a", "b"]
    assert verdicts[1].score > verdicts[0].score


def test_load_weighs_accelerators():
    nodes = [node("a", accelerators=(90.0,)), node("b", accelerators=(10.0,))]

    chosen, _ = placer().rank(spec(), nodes)

    assert chosen.name == "b"


def test_binpack_picks_the_busiest_node():
    nodes = [node("a", cpu_percent=80.0), node("b", cpu_percent=10.0)]

    chosen, _ = placer("binpack").rank(spec(), nodes)

    assert chosen.name == "a"


def test_job_strategy_overrides_the_default():
    nodes = [node("a", cpu_percent=80.0), node("b", cpu_percent=10.0)]

    chosen, _ = placer("load").rank(spec(placement={"strategy": "binpack"}), nodes)

    assert chosen.name == "a"


@pytest.mark.parametrize("strategy", ["load", "binpack", "round-robin"])
def test_ties_go_to_the_first_name(strategy):
    nodes = [node("b"), node("a"), node("c")]

    assert placer(strategy).rank(spec(), nodes)[0].name == "a"


def test_round_robin_cycles_by_name():
    nodes = [node("c"), node("a"), node("b")]

    plan = placer("round-robin").plan(spec(count=4), nodes)

    assert plan.chosen == ["a", "b", "c", "a"]


def test_round_robin_skips_ruled_out_nodes():
    nodes = [node("a"), node("b", NodeState.LOST), node("c")]

    plan = placer("round-robin").plan(spec(count=3), nodes)

    assert plan.chosen == ["a", "c", "a"]


def test_round_robin_moves_on_only_when_committed():
    nodes = [node("a"), node("b"), node("c")]
    rotation = placer("round-robin")

    dry = [rotation.plan(spec(), nodes).chosen for _ in range(2)]
    rotation.commit(rotation.plan(spec(count=2), nodes))
    after = rotation.plan(spec(), nodes).chosen

    assert dry == [["a"], ["a"]]
    assert after == ["c"]


def test_spread_breaks_ties_by_jobs_on_the_node():
    nodes = [
        node("a", labels={"rack": "r1"}, running=2),
        node("b", labels={"rack": "r1"}),
        node("c", labels={"rack": "r2"}, running=1),
    ]

    chosen, _ = placer("spread", spread_over="rack").rank(spec(), nodes)

    assert chosen.name == "b"


def test_spread_fills_every_node_of_a_value():
    nodes = [
        node("a", labels={"site": "s1"}),
        node("b", labels={"site": "s2"}),
        node("c", labels={"site": "s2"}),
    ]

    plan = placer("spread", spread_over="site").plan(spec(count=4), nodes)

    assert plan.chosen == ["a", "b", "c", "a"]


def test_spread_over_alone_selects_spread():
    nodes = [node("a", labels={"site": "s1"}), node("b", labels={"site": "s2"})]

    plan = placer("load").plan(spec(count=2, placement={"spread_over": "site"}), nodes)

    assert plan.strategy == "spread"
    assert plan.chosen == ["a", "b"]


def test_job_spread_uses_the_default_label():
    nodes = [node("a", labels={"site": "s1"}), node("b", labels={"site": "s2"})]
    job = spec(count=2, placement={"strategy": "spread"})

    plan = placer("load", spread_over="site").plan(job, nodes)

    assert plan.chosen == ["a", "b"]


def test_spread_without_a_label_is_rejected():
    with pytest.raises(ValueError, match="needs a node label"):
        placer().rank(spec(placement={"strategy": "spread"}), [node("a")])


def test_load_spreads_copies_without_limits():
    nodes = [node("a"), node("b"), node("c")]

    plan = placer("load").plan(spec(count=3), nodes)

    assert plan.chosen == ["a", "b", "c"]


def test_spread_counts_copies_of_the_same_job_first():
    nodes = [node("a", labels={"rack": "r1"}), node("b", labels={"rack": "r2"})]
    claims = {"a": Claims(), "b": Claims()}
    claims["a"].add(spec(name="db-0"), "db")
    claims["a"].add(spec(name="db-1"), "db")
    claims["b"].add(spec(name="web-0"), "web")

    chosen, _ = placer("spread", spread_over="rack").rank(
        spec(name="web-1"), nodes, claims, group="web"
    )

    assert chosen.name == "a"


def test_filtered_nodes_carry_reasons():
    nodes = [node("a", NodeState.OFFLINE), node("b", device_type="RK3588")]
    job = spec(placement={"device_type": "RK3588"})

    chosen, verdicts = placer().rank(job, nodes)

    assert chosen.name == "b"
    assert verdicts[0].filtered == "online: node is offline"
    assert verdicts[0].score is None
    assert verdicts[1].filtered is None


@pytest.mark.parametrize("strategy", ["load", "binpack", "round-robin", "spread"])
def test_empty_fleet_chooses_nothing(strategy):
    chosen, verdicts = placer(strategy, spread_over="zone").rank(spec(), [])

    assert chosen is None
    assert verdicts == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"strategy": "random"}, "Invalid enum value 'random'"),
        ({"strategy": "spread"}, "needs spread_over"),
        ({"weights": {"gpu": 1.0}}, r"unknown weights \['gpu'\]"),
        ({"weights": {"cpu": -1.0}}, "must not be negative"),
        ({"weights": {"cpu": 0.0}}, "at least one weight"),
        ({"start_time": "soon"}, "invalid duration"),
    ],
)
def test_bad_config_is_rejected(config, message):
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(config, PlacementConfig)


def test_plan_places_each_copy_after_the_last():
    nodes = [node("a", cpu_count=2), node("b", cpu_count=2)]

    plan = placer().plan(spec(count=3, cpus=1), nodes)

    assert plan.jobs == ["web-0", "web-1", "web-2"]
    assert plan.chosen == ["a", "b", "a"]


def test_plan_marks_copies_that_fit_nowhere():
    nodes = [node("a", cpu_count=2)]

    plan = placer().plan(spec(count=3, cpus=1), nodes)

    assert plan.chosen == ["a", "a", None]
    assert "cpu_fit" in plan.nodes[0].filtered


def test_plan_counts_stored_reservations_and_skips_excluded_nodes():
    stored = JobRecord(spec=spec(name="db", cpus=4), desired="running", node="a")
    stopped = JobRecord(spec=spec(name="old", cpus=4), desired="stopped", node="b")
    nodes = [node("a"), node("b"), node("c")]

    plan = placer().plan(spec(cpus=1), nodes, [stored, stopped], exclude={"b"})

    assert plan.chosen == ["c"]
    assert [v.name for v in plan.nodes] == ["a", "c"]


def test_claims_count_reserving_records_by_node():
    records = [
        JobRecord(spec=spec(name="a1", cpus=1.5, mem_limit="1g"), desired="running", node="a"),
        JobRecord(spec=spec(name="a2", cpus=0.5), desired="paused", node="a", group="g"),
        JobRecord(spec=spec(name="b1", cpus=2), desired="removed", node="b"),
        JobRecord(spec=spec(name="x", cpus=2), desired="running"),
    ]  # fmt: skip

    claims = claims_of(records)

    assert list(claims) == ["a"]
    assert claims["a"].cpus == 2.0
    assert claims["a"].mem_bytes == GIB
    assert claims["a"].groups == {"a1": 1, "g": 1}
