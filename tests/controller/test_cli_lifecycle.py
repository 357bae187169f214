import asyncio
import json
import re
import time
import urllib.error

import nats

from controller.cli import ExitCode
from schemas.messages import JobEvent, encode
from tests.controller.fleet import (
    INDEX_TEXT,
    fetch,
    free_port,
    wait_until,
)

SLOW_HEARTBEAT_S = "2"
WATCH_READY_TIMEOUT_S = 15.0


def submit_web(fleet, name, port, *args):
    path = fleet.job_file(name, ports=[f"127.0.0.1:{port}:80"])
    return fleet.cli("submit", path, *args)


def fetch_error(port):
    try:
        fetch(port, retry_s=0)
    except urllib.error.URLError as exc:
        return exc
    return None


def test_submit_serves_http_page(fleet, unique_name):
    name, port = unique_name("web"), free_port()

    result = submit_web(fleet, name, port)

    assert result.exit_code == ExitCode.OK, result.output
    pattern = (
        rf"{name} running on node {fleet.node}, container [0-9a-f]{{12}}, "
        rf"ports 127\.0\.0\.1:{port}->80/tcp\n"
    )
    assert re.fullmatch(pattern, result.stdout)
    assert fetch(port) == INDEX_TEXT
    assert fleet.container_state(name) == "running"


def test_submit_json_reports_job(fleet, unique_name):
    name, port = unique_name("web"), free_port()

    result = submit_web(fleet, name, port, "--json")

    assert result.exit_code == ExitCode.OK, result.output
    job = json.loads(result.stdout)
    assert job["name"] == name
    assert job["state"] == "running"
    assert job["desired"] == "running"
    assert job["node"] == fleet.node
    assert job["ports"][0]["host_port"] == port


def test_pause_and_unpause_job(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    submit_web(fleet, name, port)

    paused = fleet.cli("pause", name)
    container_paused = fleet.container_state(name)
    unpaused = fleet.cli("unpause", name)

    assert paused.exit_code == ExitCode.OK, paused.output
    assert paused.stdout.startswith(f"{name} paused on node {fleet.node}")
    assert container_paused == "paused"
    assert unpaused.exit_code == ExitCode.OK, unpaused.output
    assert unpaused.stdout.startswith(f"{name} running on node {fleet.node}")
    assert fleet.jobs()[name]["desired"] == "running"
    assert fetch(port) == INDEX_TEXT


def test_stop_and_start_job(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    submit_web(fleet, name, port)

    stopped = fleet.cli("stop", name)
    container_stopped = fleet.container_state(name)
    desired_after_stop = fleet.jobs()[name]["desired"]
    refused = fetch_error(port)
    started = fleet.cli("start", name, "--json")

    assert stopped.exit_code == ExitCode.OK, stopped.output
    assert stopped.stdout.startswith(f"{name} exited on node {fleet.node}")
    assert container_stopped == "exited"
    assert desired_after_stop == "stopped"
    assert isinstance(refused, urllib.error.URLError)
    assert started.exit_code == ExitCode.OK, started.output
    assert json.loads(started.stdout)["state"] == "running"
    assert fetch(port) == INDEX_TEXT


def submit_stubborn(fleet, name):
    """Submit a job that ignores SIGTERM and has a stop grace of 7 s."""
    path = fleet.job_file(
        name,
        command=["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
        stop_grace_period="7s",
    )
    submitted = fleet.cli("submit", path)
    assert submitted.exit_code == ExitCode.OK, submitted.output


def test_stop_waits_for_long_grace(fleet, unique_name):
    name = unique_name("stubborn")
    submit_stubborn(fleet, name)

    started = time.monotonic()
    stopped = fleet.cli("stop", name, "--timeout", "1")
    took_s = time.monotonic() - started

    assert stopped.exit_code == ExitCode.OK, stopped.output
    assert stopped.stdout.startswith(f"{name} exited on node {fleet.node}")
    assert took_s >= 7
    assert fleet.container_state(name) == "exited"


def test_remove_waits_for_long_grace(fleet, unique_name):
    name = unique_name("stubborn")
    submit_stubborn(fleet, name)

    started = time.monotonic()
    removed = fleet.cli("remove", name, "--timeout", "1")
    took_s = time.monotonic() - started

    assert removed.exit_code == ExitCode.OK, removed.output
    assert removed.stdout.startswith(f"{name} removed")
    assert took_s >= 7
    assert name not in fleet.jobs()
    assert fleet.containers(name) == []


def test_remove_deletes_job_and_container(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    submit_web(fleet, name, port)

    result = fleet.cli("remove", name)

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.startswith(f"{name} removed")
    assert name not in fleet.jobs()
    assert fleet.containers(name) == []


def test_inspect_prints_job_and_container(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    submit_web(fleet, name, port)

    result = fleet.cli("inspect", name)

    assert result.exit_code == ExitCode.OK, result.output
    document = json.loads(result.stdout)
    assert document["job"]["name"] == name
    assert document["job"]["node"] == fleet.node
    assert document["container"]["state"] == "running"
    assert document["container"]["id"] == document["job"]["container_id"]
    assert document["spec"]["name"] == name
    assert document["spec"]["ports"] == [f"127.0.0.1:{port}:80"]
    assert document["spec"]["stop_grace_period"] == "1s"
    assert document["spec"]["placement"] == {"node": fleet.node}


def test_logs_prints_container_output(fleet, unique_name):
    name = unique_name("echo")
    command = ["sh", "-c", "echo hello-from-job; exec httpd -f -p 80 -h /www"]
    fleet.cli("submit", fleet.job_file(name, command=command))

    result = wait_until(
        lambda: (
            (r := fleet.cli("logs", name, "--tail", "5")).exit_code == 0
            and "hello-from-job" in r.stdout
            and r
        ),
        "the job's log line",
    )

    assert result.stdout.strip() == "hello-from-job"


def test_jobs_table_lists_job(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    submit_web(fleet, name, port)

    result = fleet.cli("jobs")

    assert result.exit_code == ExitCode.OK, result.output
    row = next(line for line in result.stdout.splitlines() if name in line)
    assert fleet.node in row
    assert "running" in row
    assert f"127.0.0.1:{port}->80/tcp" in row


def test_nodes_table_and_json(fleet):
    table = fleet.cli("nodes")
    listed = fleet.cli("nodes", "--json")

    assert table.exit_code == ExitCode.OK, table.output
    assert fleet.node in table.stdout
    assert "online" in table.stdout
    node = next(n for n in json.loads(listed.stdout) if n["name"] == fleet.node)
    assert node["state"] == "online"
    assert node["device_type"] == "x86"
    assert node["labels"] == {"zone": "test"}
    assert node["last_seen"] > 0


def test_no_wait_submit_reaches_running(fleet, unique_name):
    name, port = unique_name("web"), free_port()

    result = submit_web(fleet, name, port, "--no-wait")

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.startswith(f"{name} pending on node {fleet.node}")
    wait_until(lambda: fleet.job_state(name) == "running", f"job {name} running")
    assert fetch(port) == INDEX_TEXT


def test_reconciler_undoes_external_pause(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    submit_web(fleet, name, port)

    fleet.containers(name)[0].pause()

    wait_until(
        lambda: fleet.container_state(name) == "running", f"container {name} unpaused"
    )
    assert fleet.jobs()[name]["desired"] == "running"


def test_exited_container_is_left_exited(fleet, unique_name):
    name = unique_name("once")
    path = fleet.job_file(name, command=["sh", "-c", "sleep 1; exit 3"])
    fleet.cli("submit", path)

    job = wait_until(
        lambda: fleet.jobs()[name]["state"] == "exited" and fleet.jobs()[name],
        f"job {name} exited",
    )

    assert job["desired"] == "running"
    assert job["message"] == "exited with code 3"
    assert fleet.container_state(name) == "exited"


def publish_probes(url: str, job: str, until) -> None:
    """Publish job events for `job` every 0.2 s until `until()` is true.

    A watcher that shows a probe has its subscriptions in place, so the
    events of the test that follow cannot be missed.
    """

    async def publish() -> None:
        client = await nats.connect(url)
        try:
            deadline = time.monotonic() + WATCH_READY_TIMEOUT_S
            while not until() and time.monotonic() < deadline:
                event = JobEvent(
                    job=job, state="probe", desired="running", time=time.time()
                )
                await client.publish(f"dsched.job.{job}.evt", encode(event))
                await client.flush()
                await asyncio.sleep(0.2)
        finally:
            await client.close()

    asyncio.run(publish())


def test_watch_prints_job_events(fleet, unique_name):
    name, port, probe = unique_name("web"), free_port(), unique_name("probe")
    watcher = fleet.spawn("controller", "--nats", fleet.url, "watch", "--timeout", "60")
    publish_probes(fleet.url, probe, lambda: probe in watcher.output())

    submit_web(fleet, name, port)
    fleet.cli("stop", name)
    watcher.wait_for_output(rf" {name} .*exited \(desired stopped\)")

    lines = [line for line in watcher.output().splitlines() if f" {name} " in line]
    assert any("job" in line and "running (desired running)" in line for line in lines)
    assert any("exited (desired stopped)" in line for line in lines)


def test_watch_json_stops_after_count(fleet, unique_name):
    probe = unique_name("probe")
    watcher = fleet.spawn(
        "controller", "--nats", fleet.url, "watch", "--json", "--count", "1"
    )

    publish_probes(fleet.url, probe, lambda: watcher.returncode is not None)
    code = watcher.wait(timeout_s=15)

    assert code == ExitCode.OK
    lines = watcher.output().splitlines()
    assert all("  " not in line for line in lines)
    events = [json.loads(line) for line in lines]
    assert len(events) == 1
    assert events[0]["subject"] == f"dsched.job.{probe}.evt"
    assert events[0]["event"]["state"] == "probe"


def test_start_after_external_stop_shows_ports(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    submit_web(fleet, name, port)
    fleet.containers(name)[0].stop(timeout=1)
    wait_until(lambda: fleet.job_state(name) == "exited", f"job {name} exited")
    ports_while_exited = fleet.jobs()[name]["ports"]

    started = fleet.cli("start", name)

    assert ports_while_exited == []
    assert started.exit_code == ExitCode.OK, started.output
    assert f"ports 127.0.0.1:{port}->80/tcp" in started.stdout
    assert fleet.jobs()[name]["ports"][0]["host_port"] == port


def test_reconciler_sends_command_once(fleet, cleanup_node, unique_name):
    # Heartbeats far apart make the reconciler see the heartbeat from before
    # its command on many passes.
    node, name = cleanup_node(unique_name("slow")), unique_name("web")
    fleet.spawn(
        "node-agent",
        "--nats",
        fleet.url,
        "--node-id",
        node,
        "--heartbeat",
        SLOW_HEARTBEAT_S,
        wait_for="connected",
    )
    wait_until(lambda: node in fleet.nodes(), f"node {node} online")
    fleet.cli("submit", fleet.job_file(name, placement={"node": node}))
    sending = f"job {name}: sending unpause"

    fleet.containers(name)[0].pause()
    wait_until(lambda: sending in fleet.controller.output(), "the unpause command")
    time.sleep(2 * float(SLOW_HEARTBEAT_S))

    assert fleet.controller.output().count(sending) == 1
    assert fleet.container_state(name) == "running"
