import asyncio
import contextlib
import threading
from collections.abc import Iterator

import nats
from click.testing import CliRunner

from controller.cli import ExitCode, cli
from tests.controller.fleet import (
    POLL_INTERVAL_S,
    WAIT_TIMEOUT_S,
    free_port,
)


def test_nats_down_named_in_error():
    url = f"nats://127.0.0.1:{free_port()}"

    result = CliRunner().invoke(cli, ["--nats", url, "jobs"])

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr.startswith(f"Error: cannot connect to NATS at {url}")
    assert result.stderr.count("\n") == 1


def test_missing_controller_named_in_error(nats_server):
    result = CliRunner().invoke(cli, ["--nats", nats_server.url, "nodes"])

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stderr == (
        f"Error: no controller responds on {nats_server.url}; start it with "
        "`controller serve`\n"
    )


def test_nats_url_from_environment(nats_server):
    result = CliRunner().invoke(cli, ["jobs"], env={"NATS_URL": nats_server.url})

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert nats_server.url in result.stderr


def test_invalid_prefix_is_usage_error():
    result = CliRunner().invoke(cli, ["--prefix", "a.*", "jobs"])

    assert result.exit_code == ExitCode.USAGE
    assert "Invalid value for '--prefix'" in result.stderr


@contextlib.contextmanager
def silent_controller(url: str, subject: str) -> Iterator[None]:
    """Subscribe on `subject` in a thread and never reply, as a stuck controller."""
    ready, done = threading.Event(), threading.Event()

    async def serve() -> None:
        client = await nats.connect(url)
        try:
            await client.subscribe(subject)
            await client.flush()
            ready.set()
            while not done.is_set():
                await asyncio.sleep(POLL_INTERVAL_S)
        finally:
            await client.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(WAIT_TIMEOUT_S), f"no subscription on {subject}"
        yield
    finally:
        done.set()
        thread.join(WAIT_TIMEOUT_S)


def test_stuck_controller_reports_user_timeout(nats_server):
    with silent_controller(nats_server.url, "dsched.api.pause"):
        result = CliRunner().invoke(
            cli, ["--nats", nats_server.url, "pause", "web", "--timeout", "1"]
        )

    assert result.exit_code == ExitCode.TIMEOUT
    assert result.stderr == (
        "Error: the controller did not respond to the pause request within 1 s; "
        "check its log, or pass a larger --timeout\n"
    )
