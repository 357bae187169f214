"""The `node-agent` command: run one node's agent until SIGTERM or SIGINT."""

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import click

from node_agent.agent import (
    DEFAULT_DEVICE_TYPE,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    Agent,
    AgentSettings,
)
from node_agent.bandwidth import (
    DEFAULT_BURST_BYTES,
    DEFAULT_FLUCTUATE_INTERVAL_S,
    FixedRate,
    FluctuatingRate,
    RatePlan,
    TraceRate,
    describe_rate,
)
from node_agent.collectors import AUTO_DEVICE_TYPE, detect_device_type
from node_agent.devices import DEV_ROOT
from node_agent.errors import AgentError
from node_agent.link import (
    DEFAULT_DISCONNECT_S,
    DEFAULT_EVENT_BUFFER,
    DEFAULT_RECONNECT_MAX_WAIT_S,
    DEFAULT_RECONNECT_S,
    LinkSettings,
)
from node_agent.session import DEFAULT_NATS_URL, NatsOptions
from node_agent.traces import load_trace, parse_rate
from schemas.names import MAX_NAME_LENGTH, check_name
from schemas.subjects import DEFAULT_PREFIX, Subjects
from schemas.values import parse_size

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


def _check_positive(ctx: click.Context, param: click.Parameter, value: float):
    if value <= 0:
        raise click.BadParameter(f"{value!r} must be greater than 0 seconds")
    return value


def _check_rate(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    try:
        return parse_rate(value, unit_required=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _check_burst(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        burst = parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if burst < 1:
        raise click.BadParameter(f"burst {value!r} must be at least 1 byte")
    return burst


RATE_UNITS_HELP = (
    "RATE is a number with a unit: bit, kbit, Mbit, Gbit (or bps, kbps, Mbps, "
    "Gbps) are bits per second; B/s, kB/s, MB/s, GB/s are bytes per second; "
    "k, M and G are powers of 1000. So 100Mbit = 100Mbps = 12.5MB/s."
)


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=RATE_UNITS_HELP
    + "\n\nA second SIGTERM or SIGINT exits at once, without waiting for "
    "running commands."
    + "\n\nExit codes: 0 stopped by SIGTERM or SIGINT, 1 other failure, 2 usage "
    f"error, {EXIT_NODE_ID_IN_USE} node id in use (at start-up, or taken by another "
    f"agent while this one was offline), {EXIT_UNAVAILABLE} NATS or "
    "Docker unreachable at start-up.",
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
    help="Board type reported in heartbeats, e.g. ATLAS_I, RK3588, JETSON_ORIN. "
    "It also selects the accelerator telemetry: ATLAS* reads npu-smi, RK3588* "
    "the rknpu load file, JETSON* tegrastats (or the GPU load file in sysfs), "
    "NVIDIA* and GPU* nvidia-smi; other types report CPU, memory and disk "
    "only. 'auto' detects the type from npu-smi, the rknpu folder, tegrastats "
    "or /etc/nv_tegra_release, and nvidia-smi, in that order, else x86 or "
    "the machine name.",
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
    "--dev-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="DIR",
    default=DEV_ROOT,
    show_default=True,
    help="Folder the agent lists device nodes from. Heartbeats report them as "
    "/dev paths, so an agent in a container reads the host's /dev mounted at DIR.",
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
    "--disconnect",
    "disconnect_s",
    type=float,
    metavar="SECONDS",
    default=DEFAULT_DISCONNECT_S,
    show_default=True,
    help="Disconnect cycles: stay connected this long, then go offline for "
    "--reconnect seconds, and repeat. 0 or less turns cycles off.",
)
@click.option(
    "--reconnect",
    "reconnect_s",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=DEFAULT_RECONNECT_S,
    show_default=True,
    help="Length of the offline part of each disconnect cycle.",
)
@click.option(
    "--disconnect-mode",
    type=click.Choice(["announced", "abrupt"]),
    default="announced",
    show_default=True,
    help="announced: publish a link-down event with the planned return, then "
    "close the connection. abrupt: drop the socket without a word, as a "
    "failed link would.",
)
@click.option(
    "--reconnect-max-wait",
    "reconnect_max_wait_s",
    type=float,
    metavar="SECONDS",
    default=DEFAULT_RECONNECT_MAX_WAIT_S,
    show_default=True,
    callback=_check_positive,
    help="Max wait between reconnect attempts; the waits grow exponentially, "
    "with jitter, up to this cap.",
)
@click.option(
    "--offline-buffer",
    type=click.IntRange(min=1),
    metavar="COUNT",
    default=DEFAULT_EVENT_BUFFER,
    show_default=True,
    help="Events kept while offline and sent on return; the oldest are dropped "
    "first, and the count dropped is reported.",
)
@click.option(
    "--bandwidth",
    "bandwidth_bps",
    metavar="RATE",
    callback=_check_rate,
    help="Shape the link to a fixed RATE, e.g. 100Mbit, 20Mbps, 5MB/s. "
    "Default: not shaped.",
)
@click.option(
    "--bandwidth-fluctuate",
    is_flag=True,
    help="Shape the link to a rate drawn uniformly from --bandwidth-min to "
    "--bandwidth-max every --fluctuate-interval seconds.",
)
@click.option(
    "--bandwidth-min",
    "bandwidth_min_bps",
    metavar="RATE",
    default="50Mbit",
    show_default=True,
    callback=_check_rate,
    help="Lowest rate of --bandwidth-fluctuate.",
)
@click.option(
    "--bandwidth-max",
    "bandwidth_max_bps",
    metavar="RATE",
    default="500Mbit",
    show_default=True,
    callback=_check_rate,
    help="Highest rate of --bandwidth-fluctuate.",
)
@click.option(
    "--fluctuate-interval",
    "fluctuate_interval_s",
    type=float,
    metavar="SECONDS",
    default=DEFAULT_FLUCTUATE_INTERVAL_S,
    show_default=True,
    callback=_check_positive,
    help="Seconds between two draws of --bandwidth-fluctuate.",
)
@click.option(
    "--seed",
    type=int,
    help="Seed of the --bandwidth-fluctuate draws, to repeat an experiment. "
    "Default: a different sequence each run.",
)
@click.option(
    "--bandwidth-trace",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="Replay a bandwidth trace in a loop: a Mahimahi trace (one delivery "
    "time in ms per 1500-byte packet per line) or a CSV of seconds,rate rows.",
)
@click.option(
    "--burst",
    "burst_bytes",
    metavar="SIZE",
    default=str(DEFAULT_BURST_BYTES),
    show_default=True,
    callback=_check_burst,
    help="Bytes the shaper lets pass at once after an idle moment, e.g. 64k. "
    "A larger message still passes: it waits as long as the link needs for "
    "the bytes beyond the burst, so the average rate holds.",
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
    dev_root: Path,
    prefix: str,
    disconnect_s: float,
    reconnect_s: float,
    disconnect_mode: str,
    reconnect_max_wait_s: float,
    offline_buffer: int,
    bandwidth_bps: float | None,
    bandwidth_fluctuate: bool,
    bandwidth_min_bps: float,
    bandwidth_max_bps: float,
    fluctuate_interval_s: float,
    seed: int | None,
    bandwidth_trace: str | None,
    burst_bytes: int,
    log_level: str,
) -> None:
    """Run the agent of one node: execute the controller's commands on the
    local Docker Engine, and publish heartbeats and container events.

    The agent also emulates an unreliable edge link: disconnect cycles are on
    by default (connected 30 s, offline 20 s; --disconnect 0 turns them off),
    and --bandwidth, --bandwidth-fluctuate or --bandwidth-trace shape every
    message it sends and receives."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    if device_type.lower() == AUTO_DEVICE_TYPE:
        device_type = detect_device_type()
        logging.getLogger(__name__).info(
            "node %s detected device type %s", node_id, device_type
        )
    ctx = click.get_current_context()
    bandwidth = _rate_plan(ctx)
    _warn_unused_cycle_options(ctx)
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
        dev_root=dev_root,
        link=LinkSettings(
            disconnect_s=disconnect_s,
            reconnect_s=reconnect_s,
            mode=disconnect_mode,
            reconnect_max_wait_s=reconnect_max_wait_s,
            event_buffer=offline_buffer,
        ),
        bandwidth=bandwidth,
        burst_bytes=burst_bytes,
    )
    try:
        asyncio.run(run_agent(settings))
    except AgentError as exc:
        click.echo(f"node-agent: error: {exc.message}", err=True)
        sys.exit(_EXIT_CODES.get(exc.code, EXIT_ERROR))


# Options that apply only with disconnect cycles, by parameter name.
_CYCLES_ONLY = {
    "reconnect_s": "--reconnect",
    "disconnect_mode": "--disconnect-mode",
}
# Options that apply only with --bandwidth-fluctuate, by parameter name.
_FLUCTUATE_ONLY = {
    "bandwidth_min_bps": "--bandwidth-min",
    "bandwidth_max_bps": "--bandwidth-max",
    "fluctuate_interval_s": "--fluctuate-interval",
    "seed": "--seed",
}


def _rate_plan(ctx: click.Context) -> RatePlan | None:
    """Return the rate plan the bandwidth options ask for; None when unshaped."""
    params = ctx.params
    chosen = [
        option
        for option, given in (
            ("--bandwidth", params["bandwidth_bps"] is not None),
            ("--bandwidth-fluctuate", params["bandwidth_fluctuate"]),
            ("--bandwidth-trace", params["bandwidth_trace"] is not None),
        )
        if given
    ]
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} exclude each other; use one")
    source = click.core.ParameterSource.COMMANDLINE
    for name, option in _FLUCTUATE_ONLY.items():
        if (
            ctx.get_parameter_source(name) is source
            and not params["bandwidth_fluctuate"]
        ):
            raise click.UsageError(f"{option} applies only with --bandwidth-fluctuate")
    if ctx.get_parameter_source("burst_bytes") is source and not chosen:
        raise click.UsageError(
            "--burst applies only with --bandwidth, --bandwidth-fluctuate or "
            "--bandwidth-trace"
        )
    low, high = params["bandwidth_min_bps"], params["bandwidth_max_bps"]
    if params["bandwidth_fluctuate"] and low > high:
        raise click.UsageError(
            f"--bandwidth-min {describe_rate(low)} is above --bandwidth-max "
            f"{describe_rate(high)}"
        )
    try:
        if params["bandwidth_fluctuate"]:
            return FluctuatingRate(
                params["bandwidth_min_bps"],
                params["bandwidth_max_bps"],
                params["fluctuate_interval_s"],
                params["seed"],
            )
        if params["bandwidth_bps"] is not None:
            return FixedRate(params["bandwidth_bps"])
        if params["bandwidth_trace"] is not None:
            return TraceRate(load_trace(params["bandwidth_trace"]))
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc)) from None
    return None


def _warn_unused_cycle_options(ctx: click.Context) -> None:
    """Warn about cycle options given while --disconnect turns cycles off.

    Scripts often keep them and set --disconnect 0, so this is no error.
    """
    if ctx.params["disconnect_s"] > 0:
        return
    source = click.core.ParameterSource.COMMANDLINE
    for name, option in _CYCLES_ONLY.items():
        if ctx.get_parameter_source(name) is source:
            logging.getLogger(__name__).warning(
                "%s has no effect: --disconnect %g turns disconnect cycles off",
                option,
                ctx.params["disconnect_s"],
            )


async def run_agent(settings: AgentSettings) -> None:
    """Run the agent until SIGTERM or SIGINT, then stop it cleanly."""
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop_requested.is_set():
            logging.getLogger(__name__).warning(
                "second stop signal: exiting without waiting for running commands"
            )
            os._exit(EXIT_ERROR)
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)

    async with Agent(settings) as agent:
        stop = asyncio.create_task(stop_requested.wait())
        failed = asyncio.create_task(agent.wait_failed())
        await asyncio.wait({stop, failed}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        failed.cancel()
    if agent.failure is not None:
        raise agent.failure
