"""Measure how many heartbeats per second the controller's registry takes in.

Starts a nats-server on a free loopback port, then for each run one
publisher process that simulates the nodes over one nats-py connection. It
registers every node with one heartbeat, and on a signal from this script
publishes `--heartbeats` more as fast as it can: one per node per round,
with `seq` counting up, each on its node's own subject (`Subjects.node_hb`).
The heartbeats carry the synthetic content of bench/placement.py (labels,
containers with ports, reservations, accelerators), about 1.5 KB each when
encoded, and are all encoded before the signal.

Two consumers take the same traffic, in separate runs:

- controller: a real `controller.service.Controller` in this process, with
  the JetStream bucket, API, node sweep, reconciler and pinger it starts.
  Its registry's `observe` is wrapped, on that one instance, to count and
  time the heartbeats after the registry has stored them. The reconciler
  and pinger intervals are an hour, so their rounds stay out of the timed
  window.
- baseline: a bare nats-py subscriber on the same wildcard subject that
  only decodes each heartbeat with `schemas.messages.heartbeat_decoder`.

The rate is the heartbeats observed, less one, over the time from the first
observation to the last. nats-server slows a publisher whose subscriber
falls behind (see its `no_fast_producer_stall` option), so the publisher
finishes only a little before the consumer. A consumer rate below the
publisher's rate means that the consumer was the limit at the end of the
run. The publisher, the consumer and nats-server share the machine's cores,
so the output also gives the CPU time of this process, where the consumer
runs, per heartbeat. Other work on the machine changes it less than the rate.

Each run uses a subject prefix of its own, and runs alternate which consumer
goes first. A run stops when every heartbeat has arrived, when none arrived
for STALL_S, or after RUN_TIMEOUT_S, and the output reports how many
heartbeats did not arrive.

    .venv/bin/python bench/heartbeat_ingest.py [--nodes 100,1000]
        [--heartbeats 100000] [--runs 5] [--seed 1] [--json]
"""

import argparse
import asyncio
import contextlib
import json
import logging
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

import msgspec
import nats

# From the benchmark beside this one: Python puts a script's folder on sys.path.
from placement import machine_line, make_node
from shaper import number_list

from broker.server import NatsServer
from controller.connection import NatsOptions
from controller.service import Controller, ControllerConfig
from schemas.messages import encode, heartbeat_decoder
from schemas.subjects import Subjects

DEFAULT_NODES = "100,1000"
DEFAULT_HEARTBEATS = 100_000
DEFAULT_RUNS = 5
DEFAULT_SEED = 1
# The registry marks a node lost after 3 intervals of silence, so 60 s keeps
# every node online between its registration and the timed heartbeats.
HEARTBEAT_INTERVAL_S = 60.0
# Keeps the controller's reconciler and pinger rounds out of the timed window.
QUIET_INTERVAL_S = 3600.0
REGISTER_TIMEOUT_S = 60.0
STALL_S = 5.0
RUN_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05
GO_LINE = b"go\n"


@dataclass
class Observations:
    """Heartbeats a consumer observed, with the times of the first and last."""

    count: int = 0
    first: float | None = None
    last: float | None = None

    def record(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1

    def reset(self) -> None:
        self.count = 0
        self.first = self.last = None

    def seconds(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first

    def rate(self) -> float | None:
        """Return heartbeats per second from the first to the last, or None."""
        seconds = self.seconds()
        if self.count < 2 or seconds <= 0:
            return None
        return (self.count - 1) / seconds


@dataclass(frozen=True)
class PublisherPlan:
    """The publisher process's task, passed to it as JSON on its command line."""

    url: str
    prefix: str
    nodes: int
    rounds: int
    seed: int


@dataclass(frozen=True)
class Run:
    nodes: int
    consumer: str
    run: int
    sent: int
    observed: int
    rate_per_s: float | None
    publish_rate_per_s: float
    seconds: float
    # CPU time of this process, where the consumer runs, from the signal to
    # the publisher until the last heartbeat, per heartbeat observed.
    cpu_us_per_heartbeat: float | None
    # Why the run fell short (missing heartbeats, stale records), or None.
    problem: str | None = None


# The publisher process


def encode_heartbeats(plan: PublisherPlan) -> tuple[list, list]:
    """Return the registrations and the timed heartbeats as (subject, data) pairs."""
    rng = random.Random(f"{plan.seed}-{plan.nodes}")
    subjects = Subjects(plan.prefix)
    now = time.time()
    templates = []
    for index in range(plan.nodes):
        name = f"node-{index:05d}"
        heartbeat = msgspec.structs.replace(
            make_node(rng, name, now)[0],
            interval_s=HEARTBEAT_INTERVAL_S,
            agent_started_at=now,
        )
        templates.append((subjects.node_hb(name), heartbeat))

    def encoded(seq: int) -> list[tuple[str, bytes]]:
        return [
            (subject, encode(msgspec.structs.replace(heartbeat, seq=seq)))
            for subject, heartbeat in templates
        ]

    timed = [pair for seq in range(1, plan.rounds + 1) for pair in encoded(seq)]
    return encoded(0), timed


async def publish(plan: PublisherPlan) -> None:
    """Register the nodes, wait for GO_LINE on stdin, publish, then print the time.

    Every heartbeat is encoded before GO_LINE, so the timed loop only publishes.
    """
    registrations, timed = encode_heartbeats(plan)
    client = await nats.connect(plan.url, name="bench-heartbeat-publisher")
    try:
        for subject, data in registrations:
            await client.publish(subject, data)
        await client.flush()
        print("registered", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(
            None, sys.stdin.buffer.readline
        )
        if not line:
            return  # this script stopped the run before the signal
        if line != GO_LINE:
            sys.exit(f"publisher: expected {GO_LINE!r} on stdin, read {line!r}")
        started = time.perf_counter()
        for subject, data in timed:
            await client.publish(subject, data)
        await client.flush()
        seconds = time.perf_counter() - started
    finally:
        await client.close()
    print(json.dumps({"sent": len(timed), "seconds": seconds}), flush=True)


@contextlib.asynccontextmanager
async def publisher_process(plan: PublisherPlan) -> AsyncIterator:
    """Start the publisher, and wait for it to exit when the block ends.

    It gets STOP_TIMEOUT_S to exit before it is killed by its pid.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--publisher",
        json.dumps(asdict(plan)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        # The publisher exits by itself after its result, or at the end of its
        # stdin. Signalling it only when it is stuck avoids a race in Python
        # 3.11: `terminate()` can reap a process that has just exited, before
        # asyncio's child watcher does, which then logs "Unknown child process".
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


async def read_line(process, step: str, timeout_s: float) -> bytes:
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout_s)
    except TimeoutError:
        raise RuntimeError(
            f"the publisher did not report {step} within {timeout_s:g} s"
        ) from None
    if not line:
        code = await process.wait()
        raise RuntimeError(f"the publisher exited with code {code} before {step}")
    return line


# The consumers


class BaselineConsumer:
    """A bare nats-py subscriber that only decodes each heartbeat."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.subject = Subjects(prefix).all_heartbeats
        self.observations = Observations()
        self.nodes: set[str] = set()
        self._client = None

    async def __aenter__(self) -> "BaselineConsumer":
        self._client = await nats.connect(self.url, name="bench-heartbeat-baseline")
        await self._client.subscribe(self.subject, cb=self._on_heartbeat)
        await self._client.flush()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._client.close()

    async def _on_heartbeat(self, message) -> None:
        heartbeat = heartbeat_decoder.decode(message.data)
        if heartbeat.seq == 0:
            self.nodes.add(heartbeat.node)
        self.observations.record()

    def registered(self) -> int:
        return len(self.nodes)

    def check(self, last_seq: int) -> str | None:
        return None


class ControllerConsumer:
    """A real controller whose registry counts the heartbeats it observes."""

    def __init__(self, url: str, prefix: str) -> None:
        config = ControllerConfig(
            nats=NatsOptions(url=url),
            prefix=prefix,
            reconcile_interval_s=QUIET_INTERVAL_S,
            ping_interval_s=QUIET_INTERVAL_S,
        )
        self.controller = Controller(config)
        self.observations = Observations()
        registry = self.controller.registry
        observe = registry.observe

        # The wrapper is an attribute of this one registry, so the class and
        # the project's files stay unchanged. It counts after `observe` returns.
        def counting_observe(heartbeat):
            transition = observe(heartbeat)
            self.observations.record()
            return transition

        registry.observe = counting_observe

    async def __aenter__(self) -> "ControllerConsumer":
        await self.controller.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.controller.stop()

    def registered(self) -> int:
        return len(self.controller.registry.nodes())

    def check(self, last_seq: int) -> str | None:
        """Return which registry records lack their last heartbeat, or None."""
        records = self.controller.registry.nodes()
        stale = [record.name for record in records if record.heartbeat.seq != last_seq]
        if not stale:
            return None
        return (
            f"{len(stale)} of {len(records)} registry records do not hold "
            f"heartbeat seq {last_seq}, for example {stale[0]!r}"
        )


CONSUMERS = {"baseline": BaselineConsumer, "controller": ControllerConsumer}


# The runs


async def wait_for_registrations(consumer, nodes: int) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while consumer.registered() < nodes:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{consumer.registered()} of {nodes} nodes registered within "
                f"{REGISTER_TIMEOUT_S:g} s"
            )
        await asyncio.sleep(POLL_S)


async def wait_until_observed(observations: Observations, target: int) -> str | None:
    """Wait until `target` heartbeats arrived, or return why they did not."""
    started = time.monotonic()
    seen, seen_at = observations.count, started
    while observations.count < target:
        await asyncio.sleep(POLL_S)
        now = time.monotonic()
        missing = target - observations.count
        if observations.count != seen:
            seen, seen_at = observations.count, now
        elif now - seen_at > STALL_S:
            return f"{missing} heartbeats missing, none arrived for {STALL_S:g} s"
        if now - started > RUN_TIMEOUT_S:
            return f"{missing} heartbeats missing after {RUN_TIMEOUT_S:g} s"
    return None


async def run_once(
    url: str, kind: str, nodes: int, rounds: int, index: int, seed: int
) -> Run:
    plan = PublisherPlan(url, f"bench{uuid.uuid4().hex[:8]}", nodes, rounds, seed)
    async with (
        CONSUMERS[kind](url, plan.prefix) as consumer,
        publisher_process(plan) as process,
    ):
        await read_line(process, "its registrations", REGISTER_TIMEOUT_S)
        await wait_for_registrations(consumer, nodes)
        observations = consumer.observations
        observations.reset()
        cpu_started = time.process_time()
        process.stdin.write(GO_LINE)
        await process.stdin.drain()
        problem = await wait_until_observed(observations, nodes * rounds)
        cpu_s = time.process_time() - cpu_started
        problem = problem or consumer.check(rounds)
        result = json.loads(await read_line(process, "its result", RUN_TIMEOUT_S))
    return Run(
        nodes=nodes,
        consumer=kind,
        run=index,
        sent=result["sent"],
        observed=observations.count,
        rate_per_s=observations.rate(),
        publish_rate_per_s=result["sent"] / result["seconds"],
        seconds=observations.seconds(),
        cpu_us_per_heartbeat=(
            cpu_s / observations.count * 1e6 if observations.count else None
        ),
        problem=problem,
    )


async def run(sizes: list[int], heartbeats: int, runs: int, seed: int) -> list[Run]:
    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        NatsServer(Path(tmp) / "nats", port=0) as server,
    ):
        for nodes in sizes:
            rounds = max(1, heartbeats // nodes)
            for index in range(runs):
                kinds = list(CONSUMERS)
                if index % 2:
                    kinds.reverse()
                for kind in kinds:
                    results.append(
                        await run_once(server.url, kind, nodes, rounds, index, seed)
                    )
    return results


def summarise(results: list[Run], sizes: list[int]) -> list[dict]:
    """Return per fleet size each consumer's rates and CPU time, and the ratios.

    Runs that lost heartbeats or left stale records are left out.
    """
    rows = []
    for nodes in sizes:
        row: dict = {"nodes": nodes}
        for kind in CONSUMERS:
            valid = [
                result
                for result in results
                if result.nodes == nodes
                and result.consumer == kind
                and result.rate_per_s is not None
                and result.problem is None
            ]
            rates = [result.rate_per_s for result in valid]
            cpu = [result.cpu_us_per_heartbeat for result in valid]
            row[kind] = {
                "runs": len(valid),
                "median_per_s": statistics.median(rates) if rates else None,
                "min_per_s": min(rates, default=None),
                "max_per_s": max(rates, default=None),
                "median_cpu_us": statistics.median(cpu) if cpu else None,
            }
        row["rate_ratio"] = ratio(row, "median_per_s")
        row["cpu_ratio"] = ratio(row, "median_cpu_us")
        rows.append(row)
    return rows


def ratio(row: dict, key: str) -> float | None:
    baseline, controller = row["baseline"][key], row["controller"][key]
    return controller / baseline if baseline and controller else None


def format_number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[Run], rows: list[dict]) -> None:
    print(
        "rate and publish in heartbeats per second (publish: the publisher's "
        "own rate); cpu: CPU time of the consumer per heartbeat in us"
    )
    print(
        f"{'nodes':>6}{'consumer':>12}{'run':>5}{'sent':>8}{'observed':>10}"
        f"{'rate':>9}{'publish':>9}{'cpu':>7}{'time s':>8}  problem"
    )
    for result in results:
        rate = format_number(result.rate_per_s, ".0f")
        cpu = format_number(result.cpu_us_per_heartbeat, ".1f")
        print(
            f"{result.nodes:>6}{result.consumer:>12}{result.run:>5}{result.sent:>8}"
            f"{result.observed:>10}{rate:>9}{result.publish_rate_per_s:>9.0f}"
            f"{cpu:>7}{result.seconds:>8.2f}  {result.problem or ''}"
        )
    print(
        "median rate (min to max) and median CPU us per heartbeat; "
        "ratios = controller / baseline"
    )
    print(
        f"{'nodes':>6}  {'baseline':<26}{'controller':<26}{'cpu':>11}"
        f"{'rate ratio':>12}{'cpu ratio':>11}"
    )
    for row in rows:
        cells = []
        for kind in CONSUMERS:
            stats = row[kind]
            cells.append(
                f"{format_number(stats['median_per_s'], '.0f')} "
                f"({format_number(stats['min_per_s'], '.0f')} to "
                f"{format_number(stats['max_per_s'], '.0f')})"
            )
        cpu = (
            f"{format_number(row['baseline']['median_cpu_us'], '.1f')}/"
            f"{format_number(row['controller']['median_cpu_us'], '.1f')}"
        )
        print(
            f"{row['nodes']:>6}  {cells[0]:<26}{cells[1]:<26}{cpu:>11}"
            f"{format_number(row['rate_ratio'], '.3f'):>12}"
            f"{format_number(row['cpu_ratio'], '.3f'):>11}"
        )
    print(machine_line())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes",
        type=lambda text: number_list(text, int),
        default=DEFAULT_NODES,
        help=f"simulated fleet sizes, comma-separated (default {DEFAULT_NODES})",
    )
    parser.add_argument(
        "--heartbeats",
        type=int,
        default=DEFAULT_HEARTBEATS,
        help="timed heartbeats per run, rounded down to whole rounds over the "
        f"nodes (default {DEFAULT_HEARTBEATS})",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=DEFAULT_RUNS,
        help=f"runs of each consumer per fleet size (default {DEFAULT_RUNS})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of the heartbeats' content (default {DEFAULT_SEED})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    # The publisher process runs this script with its plan as JSON.
    parser.add_argument("--publisher", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.publisher:
        asyncio.run(publish(PublisherPlan(**json.loads(args.publisher))))
        return
    if args.heartbeats < 2:
        parser.error(f"--heartbeats {args.heartbeats} is too few: use 2 or more")
    if args.runs < 1:
        parser.error(f"--runs {args.runs} is invalid: use 1 or more")

    # Shows the controller's warnings, such as heartbeats it ignores, on stderr.
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        results = asyncio.run(run(args.nodes, args.heartbeats, args.runs, args.seed))
    except KeyboardInterrupt:
        sys.exit("interrupted; the publisher and nats-server it started are stopped")
    rows = summarise(results, args.nodes)

    if args.json:
        print(
            json.dumps({"runs": [asdict(r) for r in results], "rates": rows}, indent=2)
        )
    else:
        print_table(results, rows)


if __name__ == "__main__":
    main()
