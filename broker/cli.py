"""The `broker` command: run nats-server with JetStream until Ctrl-C, SIGTERM or SIGHUP."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from broker.server import (
    DEFAULT_CLIENT_PORT,
    BrokerError,
    NatsServer,
    ServerStartError,
    default_config_path,
    read_config_port,
)

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
# click exits with this code when it rejects the command line.
EXIT_USAGE = 2
WATCH_INTERVAL_S = 0.2
# SIGHUP arrives when the terminal that runs the broker closes.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def default_store_dir() -> Path:
    """Return $XDG_DATA_HOME/docker-scheduler/broker, or ~/.local/share/... ."""
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "docker-scheduler" / "broker"


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=f"Exit codes: {EXIT_OK} stopped by Ctrl-C, SIGTERM or SIGHUP. "
    f"{EXIT_ERROR} nats-server failed to start or exited on its own, --config "
    f"sets an invalid port, or stdout was closed. {EXIT_USAGE} usage error.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the client port listens on (IP address or host name).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Client TCP port; 0 picks a free port. Overrides the port that --config "
    f"sets. Default: the port in --config, else {DEFAULT_CLIENT_PORT}.",
)
@click.option(
    "--store-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_store_dir,
    show_default="$XDG_DATA_HOME/docker-scheduler/broker",
    help="Directory for JetStream data and the nats-server log, created if missing.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    show_default="single.conf shipped in the broker package",
    help="nats-server configuration file.",
)
def main(
    host: str, port: int | None, store_dir: Path, config_file: Path | None
) -> None:
    """Run nats-server with JetStream until Ctrl-C, SIGTERM or SIGHUP."""
    logging.basicConfig(
        level=logging.WARNING, format="broker: %(levelname)s: %(message)s"
    )
    config_file = config_file or default_config_path()
    if port is None:
        port = _port_from_config(config_file)
    server = NatsServer(store_dir, host=host, port=port, config_file=config_file)
    exit_code = run_until_signal(server)
    click.get_current_context().exit(exit_code)


def _port_from_config(config_file: Path) -> int:
    try:
        port = read_config_port(config_file)
    except BrokerError as exc:
        click.echo(f"broker: error: {exc}", err=True)
        click.get_current_context().exit(EXIT_ERROR)

    return DEFAULT_CLIENT_PORT if port is None else port


def run_until_signal(server: NatsServer) -> int:
    """Start the server, report where it listens, and stop it on a signal.

    Returns EXIT_OK after a clean stop and EXIT_ERROR when the server fails to
    start, exits on its own, or stdout is closed. Errors are printed as one
    line on stderr. The server is stopped on every path out of this function,
    including an exception, so no nats-server outlives the broker.
    """
    received: list[int] = []

    def record_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    # The handlers go in before the start, so a signal that arrives while
    # nats-server starts is recorded instead of ending the broker.
    previous = {sig: signal.signal(sig, record_signal) for sig in STOP_SIGNALS}
    try:
        return _start_and_serve(server, received)
    except BrokenPipeError:
        _discard_stdout()
        click.echo("broker: error: stdout was closed, stopping nats-server", err=True)
        return EXIT_ERROR
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start_and_serve(server: NatsServer, received: list[int]) -> int:
    try:
        server.start()
    except ServerStartError as exc:
        click.echo(f"broker: error: {exc.summary}", err=True)
        return EXIT_ERROR
    except BrokerError as exc:
        click.echo(f"broker: error: {exc}", err=True)
        return EXIT_ERROR

    _report_listening(server)
    if not wait_for_stop_signal(server, received):
        click.echo(
            f"broker: error: nats-server exited on its own (log: {server.log_path})",
            err=True,
        )
        return EXIT_ERROR

    signal_name = signal.Signals(received[0]).name
    click.echo(f"broker: {signal_name} received, stopping nats-server")
    code = server.stop()
    click.echo(f"broker: nats-server stopped with code {code}")
    return EXIT_OK


def _report_listening(server: NatsServer) -> None:
    click.echo(f"broker: nats-server pid {server.pid} listening on {server.url}")
    click.echo(f"broker: JetStream store dir {server.store_dir}")
    click.echo(f"broker: nats-server log {server.log_path}")
    click.echo("broker: press Ctrl-C to stop")


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit raises no second error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def wait_for_stop_signal(server: NatsServer, received: list[int]) -> bool:
    """Block until a stop signal is recorded in `received`.

    Returns False when the server process exits before any signal.
    """
    while not received:
        if not server.running:
            return False
        time.sleep(WATCH_INTERVAL_S)

    return True
