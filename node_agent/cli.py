"""The `node-agent` command: run one node's agent until SIGTERM or SIGINT."""

import asyncio
import logging
import signal
import socket
import sys

import click

from node_agent.agent import (
    DEFAULT_DEVICE_TYPE,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    Agent,
    AgentSettings,
)
from node_agent.errors import AgentError
from node_agent.session import DEFAULT_NATS_URL, NatsOptions
from schemas.names import MAX_NAME_LENGTH, check_name
from schemas.subjects import DEFAULT_PREFIX, Subjects

EXIT_ERROR = 1
# The same numbers as the controller's exit codes for a conflict and an
# unavailable service.
EXIT_NODE_ID_IN_USE = 5
EXIT_UNAVAILABLE = 6
_EXIT_CODES = {"conflict": EXIT_NODE_ID_IN_USE, "unavailable": EXIT_UNAVAILABLE}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def default_node_id() -> str:
    """Return the host name as a node name: its first label, '-' for other characters."""
    label = socket.gethostname().split(".")[0]
    cleaned = "".join(
        c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in label
    )

    return cleaned.lstrip("_-")[:MAX_NAME_LENGTH] or "node"


def _check_node_id(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str:
    node_id = default_node_id() if value is None else value
    try:
        return check_name(node_id, "node id")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _check_heartbeat(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value <= 0:
        raise click.BadParameter(
            f"heartbeat interval {value!r} must be greater than 0 seconds, e.g. 0.5"
        )
    return value


def _check_prefix(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        Subjects(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _check_labels(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, str]:
    labels = {}
    for item in value:
        key, sep, label_value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"invalid label {item!r}: expected KEY=VALUE")
        labels[key] = label_value
    return labels


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 stopped by SIGTERM or SIGINT, 1 other failure, 2 usage "
    f"error, {EXIT_NODE_ID_IN_USE} node id in use, {EXIT_UNAVAILABLE} NATS or "
    "Docker unreachable.",
)
@click.option(
    "--nats",
    "nats_url",
    metavar="URL",
    envvar="NATS_URL",
    default=DEFAULT_NATS_URL,
    show_default=True,
    help="NATS server URL (environment NATS_URL).",
)
@click.option(
    "--creds",
    type=click.Path(exists=True, dir_okay=False),
    envvar="NATS_CREDS",
    help="NATS credentials file (environment NATS_CREDS); default: none.",
)
@click.option(
    "--user",
    envvar="NATS_USER",
    help="NATS user name (environment NATS_USER); default: none.",
)
@click.option(
    "--password",
    envvar="NATS_PASSWORD",
    help="NATS password (environment NATS_PASSWORD); default: none.",
)
@click.option(
    "--token",
    envvar="NATS_TOKEN",
    help="NATS authentication token (environment NATS_TOKEN); default: none.",
)
@click.option(
    "--node-id",
    metavar="ID",
    callback=_check_node_id,
    help="Node name: letters, digits, '_' and '-'. Default: this host's name.",
)
@click.option(
    "--device-type",
    metavar="TYPE",
    default=DEFAULT_DEVICE_TYPE,
    show_default=True,
    help="Board type reported in heartbeats, e.g. ATLAS_I, RK3588, JETSON_ORIN.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    callback=_check_labels,
    metavar="KEY=VALUE",
    help="Node label for placement; repeat for more. Default: none.",
)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=float,
    metavar="SECONDS",
    default=DEFAULT_HEARTBEAT_INTERVAL_S,
    show_default=True,
    callback=_check_heartbeat,
    help="Heartbeat interval in seconds; fractions such as 0.2 work.",
)
@click.option(
    "--docker-host",
    metavar="URL",
    envvar="DOCKER_HOST",
    help="Docker Engine URL (environment DOCKER_HOST). Default: the local Unix socket.",
)
@click.option(
    "--prefix",
    metavar="TOKEN",
    default=DEFAULT_PREFIX,
    show_default=True,
    callback=_check_prefix,
    help="First token of every NATS subject.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Lowest level of log lines written to stderr.",
)
def main(
    nats_url: str,
    creds: str | None,
    user: str | None,
    password: str | None,
    token: str | None,
    node_id: str,
    device_type: str,
    labels: dict[str, str],
    heartbeat_s: float,
    docker_host: str | None,
    prefix: str,
    log_level: str,
) -> None:
    """Run the agent of one node: execute the controller's commands on the
    local Docker Engine, and publish heartbeats and container events."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    settings = AgentSettings(
        node=node_id,
        device_type=device_type,
        labels=labels,
        heartbeat_interval_s=heartbeat_s,
        prefix=prefix,
        nats=NatsOptions(
            url=nats_url, creds_file=creds, user=user, password=password, token=token
        ),
        docker_host=docker_host,
    )
    try:
        asyncio.run(run_agent(settings))
    except AgentError as exc:
        click.echo(f"node-agent: error: {exc.message}", err=True)
        sys.exit(_EXIT_CODES.get(exc.code, EXIT_ERROR))


async def run_agent(settings: AgentSettings) -> None:
    """Run the agent until SIGTERM or SIGINT, then stop it cleanly."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)

    async with Agent(settings):
        await stop_requested.wait()
