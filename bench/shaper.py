"""Measure how closely the agent's shaper keeps to its rate, through NATS.

Starts a nats-server on a free loopback port and, for each rate, one
`node-agent` process with `--bandwidth`. For each message size it sends a
train of Probe commands whose replies carry that many bytes of padding, and
keeps enough of them outstanding that the uplink bucket is never idle. The
replies to the first window of requests are not timed, because the burst
pays for some of them. The measured rate is the encoded bytes of the replies
after them, over the time from the last of them to the last reply. The same
trains sent to an unshaped agent give this machine's ceiling: where a rate
comes near it, Python and NATS limit the train, not the shaper.

    .venv/bin/python bench/shaper.py [--rates 1,10,50,100,200,500]
        [--sizes 1000,10000,100000,1000000] [--max-cell-s 15] [--json]

A cell sends about 2 s of traffic at its rate, and at least 4 timed
replies. A cell that would take longer than --max-cell-s is skipped, and
the output prints how long it would take (1 MB at 1 Mbit/s: about 63 s). A
train that the agent cannot serve within twice its planned time plus 2 s
stops sending early, and its row notes that the agent fell behind. A reply
of 1,000,000 bytes of padding is about 170 bytes longer encoded and fits
the NATS default max payload of 1 MiB. Needs a running Docker Engine, which every agent connects
to.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client

from broker.server import NatsServer
from node_agent.bandwidth import DEFAULT_BURST_BYTES
from schemas.messages import Ping, Probe, Reply, encode, reply_decoder
from schemas.subjects import Subjects

BIN = Path(sys.executable).parent
SUBJECTS = Subjects()
MBIT = 1e6
BITS_PER_BYTE = 8
DEFAULT_RATES_MBIT = "1,10,50,100,200,500"
DEFAULT_SIZES = "1000,10000,100000,1000000"
DEFAULT_MAX_CELL_S = 15.0
TRAFFIC_S = 2.0
MIN_TIMED_REPLIES = 4
TOLERANCE = 0.02
# The requests outstanding cover this long at the rate, so a new request
# reaches the agent before the bucket has sent the replies queued ahead of it.
LEAD_S = 0.1
MIN_WINDOW = 4
MAX_WINDOW = 1000
# The unshaped train sizes its window as for this rate.
BASELINE_WINDOW_BPS = 1e9
# Heartbeats also pass the uplink bucket, so one a minute keeps them out of trains.
HEARTBEAT_S = 60.0
COMMAND_LIFETIME_S = 300.0
READY_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Train:
    """A probe train: what to request, how many at once and when to stop."""

    size_bytes: int  # padding per reply
    # Requests outstanding. The replies to the first window are not timed,
    # because the burst pays for some and the agent is still taking the others in.
    window: int
    count: int | None  # replies in all, or None to send until `send_s` has passed
    send_s: float  # no new request after this long


@dataclass(frozen=True)
class Cell:
    size_bytes: int
    rate_bps: float | None  # None: unshaped
    measured_bps: float | None = None
    ratio: float | None = None
    timed_replies: int = 0
    seconds: float = 0.0
    complete: bool = True  # False when the train stopped sending early
    skipped: str | None = None  # why the cell was not run


@contextlib.contextmanager
def agent_process(log_dir: Path, url: str, node: str, *options: str) -> Iterator:
    """Run `node-agent` for the body of the with block, then stop it by pid."""
    log_path = log_dir / f"{node}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "node-agent"), "--nats", url, "--node-id", node, *options],
            stdout=log,
            stderr=log,
        )
        try:
            yield process, log_path
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def log_tail(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def check_running(process: subprocess.Popen, log_path: Path) -> None:
    if process.poll() is not None:
        raise RuntimeError(
            f"node-agent exited with code {process.returncode}. The end of its "
            f"log:\n{log_tail(log_path)}"
        )


async def wait_until_ready(client: Client, node: str, process, log_path) -> None:
    """Ping the agent until it replies, for at most READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        check_running(process, log_path)
        ping = Ping(id=f"bench-{uuid.uuid4().hex}", deadline=time.time() + 5)
        try:
            await client.request(SUBJECTS.node_cmd(node), encode(ping), timeout=1)
            return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            await asyncio.sleep(0.1)
    raise RuntimeError(
        f"node-agent {node!r} did not reply within {READY_TIMEOUT_S} s. The end "
        f"of its log:\n{log_tail(log_path)}"
    )


def encoded_reply_bytes(node: str, size_bytes: int) -> int:
    reply = Reply(
        id=f"bench-{uuid.uuid4().hex}", node=node, ok=True, padding="x" * size_bytes
    )
    return len(encode(reply))


def window_for(reply_bytes: int, rate_bps: float) -> int:
    """Return how many requests keep the bucket busy: LEAD_S, and twice the burst."""
    burst = math.ceil(DEFAULT_BURST_BYTES / reply_bytes)
    lead = math.ceil(LEAD_S * rate_bps / BITS_PER_BYTE / reply_bytes)
    return min(MAX_WINDOW, max(MIN_WINDOW, 2 * burst, lead))


def plan_train(node: str, size_bytes: int, rate_bps: float) -> tuple[Train, float]:
    """Plan the train of one cell, and return it with the seconds it should take."""
    reply_bytes = encoded_reply_bytes(node, size_bytes)
    window = window_for(reply_bytes, rate_bps)
    timed = math.ceil(TRAFFIC_S * rate_bps / BITS_PER_BYTE / reply_bytes)
    count = window + max(MIN_TIMED_REPLIES, timed)
    expected_s = (count * reply_bytes - DEFAULT_BURST_BYTES) * BITS_PER_BYTE / rate_bps
    train = Train(size_bytes, window, count, 2 * expected_s + 2)

    return train, expected_s


async def run_train(client: Client, node: str, train: Train) -> list[tuple]:
    """Send the train and return (arrival, reply bytes) per reply, in arrival order."""
    inbox = client.new_inbox()
    arrivals: list[tuple[float, int]] = []
    first_reply: list[bytes] = []
    issued = 0
    done = asyncio.Event()
    send_until = time.monotonic() + train.send_s

    async def send() -> None:
        nonlocal issued
        issued += 1
        probe = Probe(
            id=f"bench-{uuid.uuid4().hex}",
            deadline=time.time() + COMMAND_LIFETIME_S,
            reply_bytes=train.size_bytes,
        )
        await client.publish(SUBJECTS.node_cmd(node), encode(probe), reply=inbox)

    def more_to_send() -> bool:
        if train.count is not None and issued >= train.count:
            return False
        return time.monotonic() < send_until

    async def on_reply(message) -> None:
        arrivals.append((time.monotonic(), len(message.data)))
        if not first_reply:
            first_reply.append(message.data)
        if more_to_send():
            await send()
        elif len(arrivals) == issued:
            done.set()

    subscription = await client.subscribe(inbox, cb=on_reply)
    try:
        for _ in range(min(train.window, train.count or train.window)):
            await send()
        await asyncio.wait_for(done.wait(), train.send_s + DRAIN_TIMEOUT_S)
    except TimeoutError:
        raise RuntimeError(
            f"only {len(arrivals)} of {issued} probe replies of {train.size_bytes} "
            f"bytes arrived within {train.send_s + DRAIN_TIMEOUT_S:.0f} s"
        ) from None
    finally:
        await subscription.unsubscribe()
    check_reply(first_reply[0])

    return arrivals


def check_reply(data: bytes) -> None:
    reply = reply_decoder.decode(data)
    if not reply.ok:
        message = reply.error.message if reply.error else "no error given"
        raise RuntimeError(f"the agent rejected the probe: {message}")


def measure(train: Train, rate_bps: float | None, arrivals: list[tuple]) -> Cell:
    """Compute the rate from the last reply of the first window to the last reply."""
    if len(arrivals) <= train.window:
        raise RuntimeError(
            f"{len(arrivals)} replies of {train.size_bytes} bytes are too few to "
            f"time: the first {train.window} are not timed"
        )
    started_at = arrivals[train.window - 1][0]
    timed = arrivals[train.window :]
    seconds = timed[-1][0] - started_at
    measured_bps = sum(size for _, size in timed) * BITS_PER_BYTE / seconds

    return Cell(
        size_bytes=train.size_bytes,
        rate_bps=rate_bps,
        measured_bps=measured_bps,
        ratio=measured_bps / rate_bps if rate_bps else None,
        timed_replies=len(timed),
        seconds=seconds,
        complete=train.count is None or len(arrivals) == train.count,
    )


async def measure_baseline(client: Client, node: str, sizes: list[int]) -> list:
    cells = []
    for size in sizes:
        window = window_for(encoded_reply_bytes(node, size), BASELINE_WINDOW_BPS)
        train = Train(size, window, None, TRAFFIC_S)
        cells.append(measure(train, None, await run_train(client, node, train)))
    return cells


async def measure_rate(
    client: Client, node: str, rate_bps: float, sizes: list[int], max_cell_s: float
) -> list[Cell]:
    cells = []
    for size in sizes:
        train, expected_s = plan_train(node, size, rate_bps)
        if expected_s > max_cell_s:
            reason = f"needs about {expected_s:.0f} s, over --max-cell-s {max_cell_s:g}"
            cells.append(Cell(size_bytes=size, rate_bps=rate_bps, skipped=reason))
            continue
        cells.append(measure(train, rate_bps, await run_train(client, node, train)))
    return cells


async def run(rates_bps: list[float], sizes: list[int], max_cell_s: float) -> list:
    run_id = uuid.uuid4().hex[:6]
    cells: list[Cell] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        NatsServer(Path(tmp) / "nats", port=0) as server,
    ):
        client = await nats.connect(server.url)
        try:
            for index, rate_bps in enumerate([None, *rates_bps]):
                node = f"bench-shaper-{run_id}-{index}"
                options = ["--disconnect", "0", "--heartbeat", str(HEARTBEAT_S)]
                if rate_bps is not None:
                    options += ["--bandwidth", f"{round(rate_bps)}bit"]
                    options += ["--burst", str(DEFAULT_BURST_BYTES)]
                with agent_process(Path(tmp), server.url, node, *options) as agent:
                    await wait_until_ready(client, node, *agent)
                    if rate_bps is None:
                        cells += await measure_baseline(client, node, sizes)
                    else:
                        cells += await measure_rate(
                            client, node, rate_bps, sizes, max_cell_s
                        )
                    check_running(*agent)
        finally:
            await client.close()
    return cells


def highest_within_tolerance(cells: list[Cell], sizes: list[int]) -> dict:
    """Return, per size, the highest rate whose ratio is within TOLERANCE of 1."""
    highest: dict[int, float | None] = dict.fromkeys(sizes)
    for cell in cells:
        if cell.ratio is None or abs(cell.ratio - 1) > TOLERANCE:
            continue
        best = highest[cell.size_bytes]
        if best is None or cell.rate_bps > best:
            highest[cell.size_bytes] = cell.rate_bps
    return highest


def print_table(cells: list[Cell], highest: dict) -> None:
    print(
        f"burst {DEFAULT_BURST_BYTES} bytes; measured rates count encoded reply "
        "bytes; rates in Mbit/s"
    )
    print(
        f"{'size B':>8}{'rate':>10}{'measured':>10}{'ratio':>8}{'replies':>9}"
        f"{'time s':>8}  note"
    )
    for cell in sorted(cells, key=lambda c: (c.size_bytes, c.rate_bps or 0)):
        rate = f"{cell.rate_bps / MBIT:g}" if cell.rate_bps else "unshaped"
        if cell.skipped:
            print(f"{cell.size_bytes:>8}{rate:>10}  skipped: {cell.skipped}")
            continue
        ratio = f"{cell.ratio:.3f}" if cell.ratio is not None else "-"
        note = "" if cell.complete else "stopped sending early: the agent fell behind"
        print(
            f"{cell.size_bytes:>8}{rate:>10}{cell.measured_bps / MBIT:>10.2f}"
            f"{ratio:>8}{cell.timed_replies:>9}{cell.seconds:>8.2f}  {note}"
        )
    print(f"highest rate within {TOLERANCE:.0%} of the configured rate, per size:")
    for size, rate_bps in highest.items():
        found = f"{rate_bps / MBIT:g} Mbit/s" if rate_bps else "none"
        print(f"  {size} B: {found}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def number_list(text: str, cast):
    try:
        values = [cast(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid list {text!r}: expected numbers separated by commas"
        ) from None
    if any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"invalid list {text!r}: use numbers above 0")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        type=lambda text: number_list(text, float),
        default=DEFAULT_RATES_MBIT,
        help=f"shaped rates in Mbit/s, comma-separated (default {DEFAULT_RATES_MBIT})",
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: number_list(text, int),
        default=DEFAULT_SIZES,
        help=f"probe reply padding in bytes, comma-separated (default {DEFAULT_SIZES})",
    )
    parser.add_argument(
        "--max-cell-s",
        type=float,
        default=DEFAULT_MAX_CELL_S,
        help="skip a cell whose train needs longer than this, in seconds "
        f"(default {DEFAULT_MAX_CELL_S:g})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    rates_bps = [rate * MBIT for rate in args.rates]

    try:
        cells = asyncio.run(run(rates_bps, args.sizes, args.max_cell_s))
    except KeyboardInterrupt:
        sys.exit("interrupted; the agents and nats-server it started are stopped")
    highest = highest_within_tolerance(cells, args.sizes)

    if args.json:
        result = {
            "burst_bytes": DEFAULT_BURST_BYTES,
            "tolerance": TOLERANCE,
            "cells": [asdict(cell) for cell in cells],
            "highest_rate_bps_within_tolerance": highest,
        }
        print(json.dumps(result, indent=2))
    else:
        print_table(cells, highest)


if __name__ == "__main__":
    main()
