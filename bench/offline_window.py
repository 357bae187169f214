"""Measure how closely the agent's offline windows match the configured length.

Starts a nats-server on a free loopback port and a `node-agent` with
disconnect cycles, and records the agent's link events and heartbeats with
their arrival times at a subscriber on the same server. Each cycle's error
is the measured offline window minus the configured one:

- announced: from the arrival of the link-down event to that of the link-up
  event;
- abrupt: no link-down event is sent, so from the arrival of the last
  heartbeat before the gap to the link-up event. Heartbeats come every
  50 ms, so this window starts up to 50 ms before the link goes down.

Both modes also report two other windows. `planned` runs from the
disconnect that the agent announced in its heartbeats (`next_disconnect_at`)
to the arrival of the link-up event, so it is free of the heartbeat phase
and includes how late the agent went offline. `reported` is `offline_s` of
the link-up event, the window as the agent timed it. The target is an error
within 100 ms.

    .venv/bin/python bench/offline_window.py [--cycles 20] [--connected-s 1]
        [--offline-s 2] [--mode announced|abrupt] [--json]

Without --mode both modes run, one after the other. Needs a running Docker
Engine, which the agent connects to.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.client import Client

# From the benchmark beside this one: Python puts a script's folder on sys.path.
from shaper import agent_process, check_running

from broker.server import NatsServer
from schemas.messages import LinkEvent, heartbeat_decoder, link_event_decoder
from schemas.subjects import Subjects

SUBJECTS = Subjects()
MODES = ("announced", "abrupt")
WINDOWS = ("observed", "planned", "reported")
HEARTBEAT_S = 0.05
TARGET_MS = 100.0
# Waiting for the cycles may take this much longer than they last.
CYCLE_SLACK = 1.5
START_SLACK_S = 30.0


@dataclass
class Recording:
    """Heartbeats and link events of one node, with their arrival times."""

    # (time.monotonic() at arrival, the heartbeat's next_disconnect_at)
    heartbeats: list[tuple[float, float | None]]
    # (time.monotonic() and time.time() at arrival, the event)
    links: list[tuple[float, float, LinkEvent]]
    ups: int = 0


async def record(client: Client, node: str, cycles: int) -> tuple:
    """Record the node's heartbeats and link events as they arrive.

    Returns the recording and an event that is set once `cycles` link-up
    events have arrived.
    """
    recording = Recording(heartbeats=[], links=[])
    enough = asyncio.Event()

    async def on_heartbeat(message) -> None:
        arrival = time.monotonic()
        beat = heartbeat_decoder.decode(message.data)
        recording.heartbeats.append((arrival, beat.next_disconnect_at))

    async def on_link(message) -> None:
        arrival, arrival_unix = time.monotonic(), time.time()
        event = link_event_decoder.decode(message.data)
        recording.links.append((arrival, arrival_unix, event))
        if event.state == "up":
            recording.ups += 1
            if recording.ups >= cycles:
                enough.set()

    await client.subscribe(SUBJECTS.node_hb(node), cb=on_heartbeat)
    await client.subscribe(SUBJECTS.node_evt(node, "link"), cb=on_link)
    await client.flush()

    return recording, enough


def last_heartbeat(recording: Recording, up: LinkEvent) -> tuple[float, float]:
    """Return (arrival, next_disconnect_at) of the last heartbeat before the gap.

    The heartbeats of the connection that `up` starts plan their disconnect
    after `up.time`, which distinguishes them even where arrival order does
    not, because nats-py runs the callbacks of each subscription in its own task.
    """
    for arrival, next_disconnect_at in reversed(recording.heartbeats):
        if next_disconnect_at is not None and next_disconnect_at < up.time:
            return arrival, next_disconnect_at
    raise RuntimeError("no heartbeat with a planned disconnect came before a link-up")


def cycle_errors(recording: Recording, mode: str, offline_s: float) -> list[dict]:
    """Return the errors of each cycle's windows, in ms."""
    errors = []
    down_at: float | None = None
    for arrival, arrival_unix, event in recording.links:
        if event.state == "down":
            down_at = arrival
            continue
        if event.mode != mode:
            raise RuntimeError(
                f"link-up event of mode {event.mode!r} where {mode!r} was expected, "
                "so the agent lost its connection outside its cycle"
            )
        beat_at, planned_down = last_heartbeat(recording, event)
        observed_from = beat_at if mode == "abrupt" else down_at
        if observed_from is None:
            raise RuntimeError("a link-up event arrived without a link-down event")
        errors.append(
            {
                "observed_ms": (arrival - observed_from - offline_s) * 1000,
                "planned_ms": (arrival_unix - planned_down - offline_s) * 1000,
                "reported_ms": (event.offline_s - offline_s) * 1000,
            }
        )
        down_at = None
    return errors


async def run_mode(
    server_url: str, log_dir: Path, mode: str, args: argparse.Namespace
) -> list[dict]:
    node = f"bench-offline-{mode}-{uuid.uuid4().hex[:6]}"
    options = [
        "--disconnect",
        str(args.connected_s),
        "--reconnect",
        str(args.offline_s),
        "--disconnect-mode",
        mode,
        "--heartbeat",
        str(HEARTBEAT_S),
    ]
    timeout_s = args.cycles * (args.connected_s + args.offline_s) * CYCLE_SLACK
    client = await nats.connect(server_url)
    try:
        recording, enough = await record(client, node, args.cycles)
        with agent_process(log_dir, server_url, node, *options) as agent:
            try:
                await asyncio.wait_for(enough.wait(), timeout_s + START_SLACK_S)
            except TimeoutError:
                check_running(*agent)
                raise RuntimeError(
                    f"{recording.ups} of {args.cycles} link-up events of node "
                    f"{node!r} arrived within {timeout_s + START_SLACK_S:.0f} s"
                ) from None
    finally:
        await client.close()

    return cycle_errors(recording, mode, args.offline_s)[: args.cycles]


def summarise(errors: list[dict], key: str) -> dict:
    """Return the median, p95 and max of the absolute errors in ms."""
    values = sorted(abs(cycle[key]) for cycle in errors)
    p95 = statistics.quantiles(values, n=100, method="inclusive")[94]
    return {
        "median_ms": round(statistics.median(values), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(values[-1], 1),
    }


async def run(args: argparse.Namespace) -> dict:
    results = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        NatsServer(Path(tmp) / "nats", port=0) as server,
    ):
        for mode in [args.mode] if args.mode else MODES:
            errors = await run_mode(server.url, Path(tmp), mode, args)
            results[mode] = {key: summarise(errors, f"{key}_ms") for key in WINDOWS}
            results[mode]["cycles"] = errors
    return results


def print_table(results: dict, args: argparse.Namespace) -> None:
    print(
        f"{args.cycles} cycles: connected {args.connected_s:g} s, offline "
        f"{args.offline_s:g} s; absolute error per cycle in ms "
        f"(target {TARGET_MS:g} ms)"
    )
    print(f"{'mode':<11}{'window':<10}{'median':>8}{'p95':>8}{'max':>8}")
    for mode, result in results.items():
        for key in WINDOWS:
            stats = result[key]
            print(
                f"{mode:<11}{key:<10}{stats['median_ms']:>8.1f}"
                f"{stats['p95_ms']:>8.1f}{stats['max_ms']:>8.1f}"
            )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use more than 0")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cycles", type=int, default=20, help="offline windows per mode (default 20)"
    )
    parser.add_argument(
        "--connected-s",
        type=positive_float,
        default=1.0,
        help="connected part of each cycle in seconds (default 1)",
    )
    parser.add_argument(
        "--offline-s",
        type=positive_float,
        default=2.0,
        help="offline part of each cycle in seconds (default 2)",
    )
    parser.add_argument(
        "--mode", choices=MODES, help="disconnect mode (default: both, in turn)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.cycles < 2:
        parser.error(f"--cycles {args.cycles} is too few: use 2 or more")

    try:
        results = asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit("interrupted; the agents and nats-server it started are stopped")

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results, args)


if __name__ == "__main__":
    main()
