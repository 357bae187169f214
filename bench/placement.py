"""Measure how long a placement decision takes with 100 to 10,000 nodes.

Builds a synthetic fleet of registry records (`controller.registry.NodeRecord`)
with varied heartbeats: CPU and memory use and reservations, labels, device
types, accelerators, link rates, containers with published ports, planned
disconnects, and some nodes offline or lost. Each running or paused container
also gets a stored job record, and their claims (`controller.placement.claims_of`)
go to `rank`, as the controller's scheduler passes them. Then it times
`Placer.rank` for one job with each strategy in `schemas.job.STRATEGIES`,
set through the Placer's `PlacementConfig`.

The baseline runs over the same records in the same rounds: the cheapest
possible choice, the least loaded node by (running containers, CPU use,
name), with no filter and no score. Each round times every method once, in
an order that rotates from round to round, so a slow spell of a shared
machine falls on all of them alike.

    .venv/bin/python bench/placement.py [--nodes 100,1000,10000]
        [--rounds 50] [--warmup 3] [--seed 1] [--json]
"""

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

# From the benchmark beside this one: Python puts a script's folder on sys.path.
from shaper import number_list

from controller.placement import Claims, PlacementConfig, Placer, claims_of
from controller.registry import NodeRecord, NodeState
from controller.store import JobRecord
from schemas.job import STRATEGIES, JobSpec
from schemas.messages import Accelerator, ContainerInfo, Heartbeat, PublishedPort
from schemas.values import parse_size

DEFAULT_NODES = "100,1000,10000"
DEFAULT_ROUNDS = 50
DEFAULT_WARMUP = 3
DEFAULT_SEED = 1
SPREAD_LABEL = "zone"
BASELINE = "baseline"

GIB = 1024**3
ZONES = [f"zone-{letter}" for letter in "abcdefgh"]
DEVICE_TYPES = ("rpi4", "jetson-orin", "atlas-200", "x86")
CPU_COUNTS = (2, 4, 8, 16)
MEM_TOTALS = (2 * GIB, 4 * GIB, 8 * GIB, 16 * GIB)
CONTAINER_STATES = ("running", "running", "running", "exited", "paused")
# The desired state of a container's stored job, by the container's state.
DESIRED_STATES = {"running": "running", "paused": "paused", "exited": "stopped"}
CONTAINER_CPUS = (None, 0.25, 0.5, 1.0)
CONTAINER_MEM_MIB = (None, 64, 256, 512)
# Shares of the fleet that are offline, lost, or due to disconnect before the
# job could start (the `online` filter rules all three out).
OFFLINE_SHARE = 0.05
LOST_SHARE = 0.03
DISCONNECT_SOON_SHARE = 0.05
MAX_CONTAINERS = 6
# The job publishes this host port, so the `ports_free` filter rules out the
# nodes whose containers publish it.
JOB_HOST_PORT = 8080

JOB = JobSpec(
    name="bench-job",
    image="busybox:1.36",
    cpus=0.5,
    mem_limit="256m",
    ports=[f"{JOB_HOST_PORT}:80"],
)


@dataclass(frozen=True)
class Cell:
    """Decision times of one method at one fleet size, in milliseconds."""

    nodes: int
    method: str
    rounds: int
    median_ms: float
    p95_ms: float
    # Median of this method over the baseline's median at the same size.
    ratio: float | None = None


def make_jobs(rng: random.Random, node: str) -> list[tuple[ContainerInfo, JobSpec]]:
    """Return the node's containers, each with the spec of the job it runs."""
    jobs = []
    for index in range(rng.randint(0, MAX_CONTAINERS)):
        name = f"{node}-job-{index}"
        ports = []
        if rng.random() < 0.3:
            host_port = rng.choice((JOB_HOST_PORT, 9000 + index, 30000 + index))
            ports.append(
                PublishedPort(
                    container_port=80,
                    protocol="tcp",
                    host_ip="0.0.0.0",
                    host_port=host_port,
                )
            )
        mem_mib = rng.choice(CONTAINER_MEM_MIB)
        spec = JobSpec(
            name=name,
            image="busybox:1.36",
            cpus=rng.choice(CONTAINER_CPUS),
            mem_limit=None if mem_mib is None else f"{mem_mib}m",
            ports=[f"{port.host_port}:{port.container_port}" for port in ports],
        )
        container = ContainerInfo(
            id=f"{rng.getrandbits(64):016x}",
            name=f"dsched-{name}",
            job=name,
            node=node,
            image=spec.image,
            state=rng.choice(CONTAINER_STATES),
            ports=ports,
        )
        jobs.append((container, spec))
    return jobs


def make_accelerators(
    rng: random.Random, device_type: str
) -> tuple[list[Accelerator], list[str] | None]:
    """Return the accelerators and device paths that a node of this type reports."""
    if device_type == "jetson-orin":
        gpu = Accelerator(kind="gpu", index=0, util_percent=rng.uniform(0, 100))
        return [gpu], None
    if device_type == "atlas-200":
        npu = Accelerator(kind="npu", index=0, util_percent=rng.uniform(0, 100))
        return [npu], ["/dev/davinci0", "/dev/davinci_manager"]
    return [], None


def make_node(
    rng: random.Random, node: str, now: float
) -> tuple[Heartbeat, list[JobRecord]]:
    """Return a node's heartbeat and the stored records of its containers' jobs."""
    device_type = rng.choice(DEVICE_TYPES)
    mem_total = rng.choice(MEM_TOTALS)
    accelerators, devices = make_accelerators(rng, device_type)
    next_disconnect_at = None
    if rng.random() < DISCONNECT_SOON_SHARE:
        next_disconnect_at = now + rng.uniform(1.0, 5.0)

    jobs = make_jobs(rng, node)
    records = [
        JobRecord(spec=spec, desired=DESIRED_STATES[container.state], node=node)
        for container, spec in jobs
    ]
    reserving = [spec for container, spec in jobs if container.state != "exited"]

    heartbeat = Heartbeat(
        node=node,
        seq=rng.randint(1, 10_000),
        sent_at=now,
        interval_s=5.0,
        device_type=device_type,
        labels={
            SPREAD_LABEL: rng.choice(ZONES),
            "arch": "amd64" if device_type == "x86" else "arm64",
            "tier": rng.choice(("edge", "gateway")),
        },
        cpu_percent=rng.uniform(0.0, 100.0),
        cpu_count=rng.choice(CPU_COUNTS),
        mem_used_bytes=int(mem_total * rng.uniform(0.1, 0.99)),
        mem_total_bytes=mem_total,
        load_avg=[rng.uniform(0, 4) for _ in range(3)],
        reserved_cpus=sum(spec.cpus or 0.0 for spec in reserving),
        reserved_mem_bytes=sum(parse_size(spec.mem_limit or 0) for spec in reserving),
        accelerators=accelerators,
        devices=devices,
        containers=[container for container, _ in jobs],
        link_rate_bps=rng.choice((None, 1e6, 10e6, 100e6, 1e9)),
        next_disconnect_at=next_disconnect_at,
    )
    return heartbeat, records


def make_fleet(count: int, seed: int) -> tuple[list[NodeRecord], list[JobRecord]]:
    """Build `count` node records in random order, and their jobs' records.

    The same seed and count give the same fleet.
    """
    rng = random.Random(f"{seed}-{count}")
    now = time.time()
    nodes = []
    records = []
    for index in range(count):
        name = f"node-{index:05d}"
        heartbeat, jobs = make_node(rng, name, now)
        node = NodeRecord(name, heartbeat, last_seen=now)
        node.link_rate_bps = heartbeat.link_rate_bps
        draw = rng.random()
        if draw < OFFLINE_SHARE:
            node.state = NodeState.OFFLINE
            node.down_since = now - 30
            node.planned_return = now + 60
        elif draw < OFFLINE_SHARE + LOST_SHARE:
            node.state = NodeState.LOST
            node.down_since = now - 120
        nodes.append(node)
        records += jobs
    rng.shuffle(nodes)
    return nodes, records


def least_loaded(nodes: list[NodeRecord]) -> NodeRecord:
    return min(
        nodes,
        key=lambda n: (n.running_containers, n.heartbeat.cpu_percent, n.name),
    )


def placer_for(strategy: str) -> Placer:
    config = PlacementConfig(strategy=strategy, spread_over=SPREAD_LABEL)
    return Placer(config=config)


def methods_for(
    nodes: list[NodeRecord], claims: dict[str, Claims]
) -> dict[str, Callable[[], object]]:
    """Return the baseline and one `rank` call per strategy, by name.

    `rank` leaves the round-robin position where it is (only `Placer.commit`
    moves it), so every round-robin call starts from the first node by name.
    """
    methods: dict[str, Callable[[], object]] = {
        BASELINE: lambda: least_loaded(nodes),
    }
    for strategy in STRATEGIES:
        placer = placer_for(strategy)
        methods[strategy] = lambda placer=placer: placer.rank(JOB, nodes, claims=claims)
    return methods


def check_decisions(nodes: list[NodeRecord], claims: dict[str, Claims]) -> None:
    """Raise RuntimeError unless every strategy chooses a node and rates them all."""
    for strategy in STRATEGIES:
        chosen, verdicts = placer_for(strategy).rank(JOB, nodes, claims=claims)
        if chosen is None or len(verdicts) != len(nodes):
            raise RuntimeError(
                f"strategy {strategy!r} over {len(nodes)} nodes chose {chosen!r} "
                f"with {len(verdicts)} verdicts: the synthetic fleet rules out "
                "every node, so the timings would not be of a decision"
            )


def time_methods(
    methods: dict[str, Callable[[], object]], rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Time every method once per round, in rotating order, and return ms per method."""
    names = list(methods)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call = methods[name]
            started = time.perf_counter()
            call()
            elapsed_ms = (time.perf_counter() - started) * 1000
            if round_index >= warmup:
                samples[name].append(elapsed_ms)
    return samples


def percentile(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def measure(sizes: list[int], rounds: int, warmup: int, seed: int) -> tuple:
    """Time every method at every size, and return the cells and fleet summaries."""
    cells = []
    summaries = []
    for size in sizes:
        nodes, records = make_fleet(size, seed)
        claims = claims_of(records)
        check_decisions(nodes, claims)
        summaries.append(summarise_fleet(nodes, records, claims))
        gc.collect()
        samples = time_methods(methods_for(nodes, claims), rounds, warmup)
        baseline_ms = statistics.median(samples[BASELINE])
        for name, values in samples.items():
            median_ms = statistics.median(values)
            cells.append(
                Cell(
                    nodes=size,
                    method=name,
                    rounds=rounds,
                    median_ms=median_ms,
                    p95_ms=percentile(values, 95),
                    ratio=median_ms / baseline_ms if baseline_ms > 0 else None,
                )
            )
    return cells, summaries


def summarise_fleet(
    nodes: list[NodeRecord], records: list[JobRecord], claims: dict[str, Claims]
) -> dict:
    """Return the fleet's size and how many nodes each filter rules out for the job."""
    _, verdicts = placer_for("load").rank(JOB, nodes, claims=claims)
    reasons: dict[str, int] = {}
    for verdict in verdicts:
        if verdict.filtered is not None:
            name = verdict.filtered.split(":", 1)[0]
            reasons[name] = reasons.get(name, 0) + 1
    containers = sum(len(node.heartbeat.containers) for node in nodes)
    return {
        "nodes": len(nodes),
        "containers": containers,
        "job_records": len(records),
        "filtered": reasons,
    }


def machine_line() -> str:
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def print_table(cells: list[Cell], summaries: list[dict]) -> None:
    for summary in summaries:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary["filtered"].items()))
        print(
            f"{summary['nodes']} nodes, {summary['containers']} containers, "
            f"{summary['job_records']} job records; "
            f"ruled out: {reasons or 'none'}"
        )
    print("milliseconds per decision; ratio = median / baseline median")
    print(f"{'nodes':>7}  {'method':<12}{'median':>10}{'p95':>10}{'ratio':>9}")
    for cell in cells:
        ratio = f"{cell.ratio:.1f}" if cell.ratio is not None else "-"
        print(
            f"{cell.nodes:>7}  {cell.method:<12}{cell.median_ms:>10.3f}"
            f"{cell.p95_ms:>10.3f}{ratio:>9}"
        )
    print(machine_line())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes",
        type=lambda text: number_list(text, int),
        default=DEFAULT_NODES,
        help=f"fleet sizes, comma-separated (default {DEFAULT_NODES})",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"timed decisions per method and size (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help=f"untimed rounds before them (default {DEFAULT_WARMUP})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the synthetic fleet (default {DEFAULT_SEED})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error(f"--rounds {args.rounds} is too few: use 2 or more")
    if args.warmup < 0:
        parser.error(f"--warmup {args.warmup} is invalid: use 0 or more")

    try:
        cells, summaries = measure(args.nodes, args.rounds, args.warmup, args.seed)
    except KeyboardInterrupt:
        sys.exit("interrupted")

    if args.json:
        result = {
            "job": {"cpus": JOB.cpus, "mem_limit": JOB.mem_limit, "ports": JOB.ports},
            "spread_label": SPREAD_LABEL,
            "fleets": summaries,
            "cells": [asdict(cell) for cell in cells],
        }
        print(json.dumps(result, indent=2))
    else:
        print_table(cells, summaries)


if __name__ == "__main__":
    main()
