"""Placement across several agents on one Docker Engine, through the CLI.

Every agent here shares this machine's engine, so the tests find a job's
containers by their dsched.job and dsched.node labels, not by name. Node
names start with node-a, node-b and node-c, so their order by name, which
decides ties and the round-robin order, is known in advance.
"""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

import nats
import pytest

from controller.cli import ExitCode
from schemas.messages import Probe, encode
from schemas.subjects import Subjects
from tests.controller.fleet import Fleet, free_port, wait_until
from tests.controller.test_reschedule import copies, running_copies

# Agent options by node letter. Fleet.start_agent passes --label zone=test
# first, and a later --label with the same key replaces it.
BOARDS = {
    "a": ("--device-type", "X86", "--label", "zone=a"),
    "b": ("--device-type", "JETSON_ORIN", "--label", "zone=b"),
    "c": ("--device-type", "RK3588", "--label", "zone=b"),
}
# The throttled node's link: 100 Mbit/s for 8 s from the agent's start, then
# 100 kbit/s. The last row makes the loop period about 20 minutes, so the rate
# stays low for the rest of the test.
THROTTLE_TRACE = "seconds,rate\n0,100Mbit\n8,100kbit\n600,100kbit\n"
MIGRATE_WHEN = {"bandwidth_below": "1Mbit", "for": "2s"}
# Seconds to wait for a migration: the 8 s of the full rate, the 2 s of `for`,
# and the container's remove and create, with a margin for a loaded machine.
MIGRATE_TIMEOUT_S = 60.0


def wait_for_nodes(fleet: Fleet, names) -> None:
    def all_online() -> bool:
        nodes = fleet.nodes()
        return all(nodes.get(name, {}).get("state") == "online" for name in names)

    wait_until(all_online, f"nodes {sorted(names)} online")


@dataclass
class Boards:
    """A fleet and its node names by letter, such as "a" for the node-a agent."""

    fleet: Fleet
    nodes: dict[str, str]


@pytest.fixture
def boards(
    nats_server, cleanup_node, spawn, docker_client, test_image, unique_name, tmp_path
) -> Boards:
    """A controller with the default strategy, load, and the agents of BOARDS."""
    nodes = {letter: cleanup_node(unique_name(f"node-{letter}")) for letter in BOARDS}
    fleet = Fleet(
        nats_server.url, nodes["a"], test_image, tmp_path, spawn, docker_client
    )
    fleet.start_controller()
    for letter, options in BOARDS.items():
        fleet.start_agent(*options, node=nodes[letter])
    wait_for_nodes(fleet, nodes.values())
    return Boards(fleet, nodes)


def dry_run(fleet: Fleet, path: str):
    """Run `submit --dry-run --json` and return the exit code and the plan."""
    result = fleet.cli("submit", "--dry-run", path, "--json")
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.output
    )
    return result.exit_code, json.loads(result.stdout)


def submit(fleet: Fleet, path: str) -> list[dict]:
    """Submit the job file and return the view of each copy."""
    result = fleet.cli("submit", path, "--json")
    assert result.exit_code == ExitCode.OK, result.output
    views = json.loads(result.stdout)
    return views if isinstance(views, list) else [views]


def verdicts(plan: dict) -> dict[str, dict]:
    return {verdict["name"]: verdict for verdict in plan["nodes"]}


def test_device_type_picks_matching_board(boards, unique_name):
    fleet, nodes = boards.fleet, boards.nodes
    name = unique_name("npu")
    path = fleet.job_file(name, placement={"device_type": "RK3588"})

    code, plan = dry_run(fleet, path)
    table = fleet.cli("submit", "--dry-run", path)
    stored_after_dry_run = name in fleet.jobs()
    created_after_dry_run = copies(fleet, name)
    views = submit(fleet, path)

    assert code == ExitCode.OK
    assert plan["strategy"] == "load"
    assert plan["jobs"] == [name]
    assert plan["chosen"] == [nodes["c"]]
    by_node = verdicts(plan)
    assert sorted(by_node) == sorted(nodes.values())
    for letter in ("a", "b"):
        assert by_node[nodes[letter]]["filtered"].startswith("device_type: ")
        assert by_node[nodes[letter]]["score"] is None
    assert by_node[nodes["c"]]["filtered"] is None
    assert by_node[nodes["c"]]["score"] is not None
    assert table.exit_code == ExitCode.OK, table.output
    assert f"{name} -> {nodes['c']} (load)" in table.output
    assert not stored_after_dry_run
    assert created_after_dry_run == []
    assert [view["node"] for view in views] == plan["chosen"]
    assert [(c.node, c.status) for c in copies(fleet, name)] == [
        (nodes["c"], "running")
    ]


def test_round_robin_copies_one_per_node(boards, unique_name):
    fleet, nodes = boards.fleet, boards.nodes
    name = unique_name("web")
    path = fleet.job_file(name, count=3, placement={"strategy": "round-robin"})

    views = submit(fleet, path)

    expected_names = [f"{name}-{index}" for index in range(3)]
    assert [view["name"] for view in views] == expected_names
    assert sorted(view["node"] for view in views) == sorted(nodes.values())
    assert [view["state"] for view in views] == ["running"] * 3
    stored = fleet.jobs()
    for view in views:
        assert stored[view["name"]]["node"] == view["node"]
        assert stored[view["name"]]["group"] == name
        running = [(c.node, c.status) for c in copies(fleet, view["name"])]
        assert running == [(view["node"], "running")], view["name"]
    assert name not in stored


def test_spread_copies_cover_both_zones(boards, unique_name):
    fleet, nodes = boards.fleet, boards.nodes
    zone_of = {nodes["a"]: "a", nodes["b"]: "b", nodes["c"]: "b"}
    name = unique_name("web")
    path = fleet.job_file(
        name, count=2, placement={"strategy": "spread", "spread_over": "zone"}
    )

    code, plan = dry_run(fleet, path)
    views = submit(fleet, path)

    assert code == ExitCode.OK
    assert plan["strategy"] == "spread"
    assert plan["jobs"] == [f"{name}-0", f"{name}-1"]
    assert sorted(zone_of[node] for node in plan["chosen"]) == ["a", "b"]
    assert all(verdict["filtered"] is None for verdict in plan["nodes"])
    assert [view["node"] for view in views] == plan["chosen"]
    for view in views:
        running = [(c.node, c.status) for c in copies(fleet, view["name"])]
        assert running == [(view["node"], "running")], view["name"]


def test_dry_run_shows_round_robin_choice(boards, unique_name):
    """A dry run of a round-robin job names the node its submit then takes."""
    fleet = boards.fleet
    name = unique_name("web")
    path = fleet.job_file(name, placement={"strategy": "round-robin"})

    code, plan = dry_run(fleet, path)
    views = submit(fleet, path)

    assert code == ExitCode.OK
    assert [view["node"] for view in views] == plan["chosen"]


def test_dry_run_without_fit_stores_nothing(boards, unique_name):
    fleet, nodes = boards.fleet, boards.nodes
    name = unique_name("npu")
    path = fleet.job_file(name, count=2, placement={"device_type": "ATLAS"})
    jobs_before = fleet.jobs()

    code, plan = dry_run(fleet, path)
    table = fleet.cli("submit", "--dry-run", path)
    submitted = fleet.cli("submit", path)

    assert code == ExitCode.UNAVAILABLE
    assert plan["chosen"] == [None, None]
    by_node = verdicts(plan)
    assert sorted(by_node) == sorted(nodes.values())
    for verdict in by_node.values():
        assert verdict["filtered"].startswith("device_type: "), verdict
    assert table.exit_code == ExitCode.UNAVAILABLE, table.output
    assert f"{name}-0 -> no node fits (load)" in table.output
    assert submitted.exit_code == ExitCode.UNAVAILABLE, submitted.output
    assert "device_type rules out 3 nodes" in submitted.output
    assert fleet.jobs() == jobs_before
    for job in (name, f"{name}-0", f"{name}-1"):
        assert copies(fleet, job) == [], job


def test_failed_copy_removes_every_copy(boards, unique_name):
    """Two copies on two nodes of one engine cannot both bind one host port.

    The filters pass, because each node lists only its own containers, so the
    engine rejects one create and the submit removes both copies.
    """
    fleet = boards.fleet
    name = unique_name("web")
    port = free_port()
    path = fleet.job_file(
        name,
        count=2,
        ports=[f"127.0.0.1:{port}:80"],
        placement={"strategy": "round-robin"},
    )
    jobs_before = fleet.jobs()

    result = fleet.cli("submit", path)

    assert result.exit_code != ExitCode.OK, result.output
    assert fleet.jobs() == jobs_before
    for job in (f"{name}-0", f"{name}-1"):
        wait_until(lambda job=job: copies(fleet, job) == [], f"no container of {job}")


def test_group_name_points_at_the_copies(boards, unique_name):
    fleet = boards.fleet
    name = unique_name("web")
    submit(fleet, fleet.job_file(name, count=2))

    result = fleet.cli("stop", name)

    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    assert f"copies are jobs of their own: {name}-0, {name}-1" in result.output


def test_existing_copy_fails_the_dry_run(boards, unique_name):
    fleet = boards.fleet
    name = unique_name("web")
    path = fleet.job_file(name, count=2)
    submit(fleet, path)

    result = fleet.cli("submit", "--dry-run", path)

    assert result.exit_code == ExitCode.CONFLICT, result.output
    assert f"jobs '{name}-0', '{name}-1' already exist" in result.output


@pytest.fixture
def throttled_pair(
    nats_server, cleanup_node, spawn, docker_client, test_image, unique_name, tmp_path
) -> Boards:
    """A round-robin controller, node a on a link that drops, and node b.

    Node a's agent starts last, so its full-rate period is spent on the
    submit and not on fixture start-up.
    """
    nodes = {letter: cleanup_node(unique_name(f"node-{letter}")) for letter in "ab"}
    trace = tmp_path / "throttle.csv"
    trace.write_text(THROTTLE_TRACE)
    fleet = Fleet(
        nats_server.url, nodes["a"], test_image, tmp_path, spawn, docker_client
    )
    fleet.start_controller("--strategy", "round-robin")
    fleet.start_agent(node=nodes["b"])
    fleet.start_agent("--bandwidth-trace", str(trace), node=nodes["a"])
    wait_for_nodes(fleet, nodes.values())
    return Boards(fleet, nodes)


def test_job_migrates_off_throttled_link(throttled_pair, unique_name):
    """The job leaves node a once its link drops, never seen running twice.

    Round-robin from a fresh controller takes the first node by name, so
    the job starts on node a while that link still runs at full rate.
    """
    fleet, nodes = throttled_pair.fleet, throttled_pair.nodes
    name = unique_name("web")
    path = fleet.job_file(
        name, placement={"labels": {"zone": "test"}}, migrate_when=MIGRATE_WHEN
    )
    [view] = submit(fleet, path)
    assert view["node"] == nodes["a"], (
        f"the job started on {view['node']}, not on the throttled node "
        f"{nodes['a']}: round-robin from a fresh controller takes the first "
        "name, unless node a's link had already dropped when the job was placed"
    )
    max_running = 0

    def job_on_b() -> dict | None:
        # Count the running copies at every poll. NOTE: two copies that
        # overlap for less than one poll would go unseen.
        nonlocal max_running
        max_running = max(max_running, len(running_copies(fleet, name)))
        job = fleet.jobs()[name]
        return job if job["node"] == nodes["b"] else None

    # The reconciler clears the move's message once the job runs again, so
    # the view is kept from the poll that saw the move.
    moved = wait_until(job_on_b, f"job {name} moved to {nodes['b']}", MIGRATE_TIMEOUT_S)

    def running_on_b() -> bool:
        job = job_on_b()
        return job is not None and job["state"] == "running"

    wait_until(running_on_b, f"job {name} running on {nodes['b']}")

    assert moved["message"].startswith(f"moved from node {nodes['a']}, link rate ")
    assert [(c.node, c.status) for c in copies(fleet, name)] == [
        (nodes["b"], "running")
    ]
    assert max_running == 1
    assert fleet.nodes()[nodes["a"]]["link_rate_bps"] < 1e6
    log = fleet.controller.output()
    assert f"job {name} moved from node {nodes['a']} to node {nodes['b']}" in log


# Node a's link for the round-trip test: 200 kbit/s, so a 50 kB command takes
# 2 s of its downlink and the controller's pings queue behind it.
SLOW_LINK = ("--bandwidth", "200kbit", "--burst", "4k")
BACKLOG_BYTES = 50_000
BACKLOG_COMMANDS = 4
RTT_RULE = {"rtt_above": "1s", "for": "1s"}


@pytest.fixture
def slow_pair(
    nats_server, cleanup_node, spawn, docker_client, test_image, unique_name, tmp_path
) -> Boards:
    """A round-robin controller, node a on a 200 kbit/s link, and node b."""
    nodes = {letter: cleanup_node(unique_name(f"node-{letter}")) for letter in "ab"}
    fleet = Fleet(
        nats_server.url, nodes["a"], test_image, tmp_path, spawn, docker_client
    )
    fleet.start_controller("--strategy", "round-robin")
    fleet.start_agent(node=nodes["b"])
    fleet.start_agent(*SLOW_LINK, node=nodes["a"])
    wait_for_nodes(fleet, nodes.values())
    return Boards(fleet, nodes)


async def fill_downlink(url: str, node: str) -> None:
    """Publish large probe commands to the node, without waiting for replies."""
    client = await nats.connect(url)
    try:
        for _ in range(BACKLOG_COMMANDS):
            probe = Probe(
                id=f"backlog-{uuid.uuid4().hex}",
                deadline=time.time() + 60,
                padding="x" * BACKLOG_BYTES,
            )
            await client.publish(Subjects().node_cmd(node), encode(probe))
        await client.flush()
    finally:
        await client.close()


def test_job_migrates_off_slow_round_trip(slow_pair, unique_name):
    """Commands queued on node a's downlink hold back the controller's pings.

    The unanswered pings count as a round trip above one second, so the job
    moves to node b once the queue has let the old container's remove pass.
    """
    fleet, nodes = slow_pair.fleet, slow_pair.nodes
    name = unique_name("web")
    path = fleet.job_file(
        name, placement={"labels": {"zone": "test"}}, migrate_when=RTT_RULE
    )
    [view] = submit(fleet, path)
    assert view["node"] == nodes["a"], view

    asyncio.run(fill_downlink(fleet.url, nodes["a"]))
    moved = wait_until(
        lambda: (job := fleet.jobs()[name])["node"] == nodes["b"] and job,
        f"job {name} moved to {nodes['b']}",
        MIGRATE_TIMEOUT_S,
    )

    assert moved["message"].startswith(f"moved from node {nodes['a']}, round trip ")
    wait_until(
        lambda: (
            [(c.node, c.status) for c in copies(fleet, name)]
            == [(nodes["b"], "running")]
        ),
        f"job {name} running on {nodes['b']} only",
    )
