"""The `controller` command: `serve` runs the service, the others call its API."""

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass

import click
import msgspec

from controller import output
from controller.agents import DOCKER_STOP_GRACE_S, stop_grace_or_default
from controller.client import ApiClient
from controller.config_file import load_config_file
from controller.connection import (
    DEFAULT_NATS_URL,
    NatsOptions,
    check_nats_url,
    connect_once,
)
from controller.errors import ControllerError, InvalidRequestError
from controller.pinger import DEFAULT_PING_INTERVAL_S
from controller.placement import PlacementConfig
from controller.probe import (
    DEFAULT_PROBE_BYTES,
    DEFAULT_PROBE_COUNT,
    ENVELOPE_BYTES,
    FIRST_REPLY_TIMEOUT_S,
    LinkProber,
    max_probe_bytes,
)
from controller.reconciler import DEFAULT_INTERVAL_S
from controller.registry import DEFAULT_MISSED_HEARTBEATS
from controller.service import ControllerConfig, serve_until_signal
from controller.waiter import wait_for_desired
from controller.watch import watch_events
from schemas.job import STRATEGIES
from schemas.jobfile import JobFileError, load_job_file
from schemas.messages import (
    JobRequest,
    JobView,
    ListRequest,
    LogsRequest,
    PlacementPlan,
    SubmitRequest,
)
from schemas.names import check_name
from schemas.subjects import DEFAULT_PREFIX, Subjects

# Verbs whose command stops a running container, so they wait its stop grace.
_STOPPING_VERBS = ("stop", "remove")
# Time the CLI waits for the controller's reply beyond the request's own bound.
REPLY_MARGIN_S = 5.0
DEFAULT_SUBMIT_TIMEOUT_S = 120.0
DEFAULT_JOB_TIMEOUT_S = 30.0
DEFAULT_TAIL = 100


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    INVALID = 3
    NOT_FOUND = 4
    CONFLICT = 5
    UNAVAILABLE = 6
    TIMEOUT = 7


_EXIT_CODES = {
    "invalid": ExitCode.INVALID,
    "not_found": ExitCode.NOT_FOUND,
    "conflict": ExitCode.CONFLICT,
    "offline": ExitCode.UNAVAILABLE,
    "unavailable": ExitCode.UNAVAILABLE,
    "timeout": ExitCode.TIMEOUT,
}


class ControllerGroup(click.Group):
    """Prints expected errors as one line on stderr and exits with their code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ControllerError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(_EXIT_CODES.get(exc.code, ExitCode.FAILED))
        except JobFileError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(ExitCode.INVALID)


@dataclass(frozen=True)
class Settings:
    nats: NatsOptions
    prefix: str

    def client(self) -> ApiClient:
        return ApiClient(self.nats, self.prefix)


def _check_prefix(ctx, param, value: str) -> str:
    try:
        Subjects(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


def _check_nats_url(ctx, param, value: str) -> str:
    try:
        return check_nats_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=_error_hint(ctx, param)) from exc


def _error_hint(ctx: click.Context, param: click.Parameter) -> str:
    """Return the option's name, and its variable only if the value came from it.

    Click 8.5.1 names the variable of an option with show_envvar in every
    error, even for a value given on the command line.
    """
    hint = " / ".join(f"'{name}'" for name in param.opts)
    if ctx.get_parameter_source(param.name) is click.ParameterSource.ENVIRONMENT:
        hint += f" (env var: '{param.envvar}')"
    return hint


def _check_job(ctx, param, value: str) -> str:
    try:
        return check_name(value, "job name")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter(f"{value!r} is not greater than 0")
    return value


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    show_default="off",
    help="Print JSON for scripts instead of a line or table.",
)
job_argument = click.argument("job", callback=_check_job)


def timeout_option(help_text: str):
    return click.option(
        "--timeout",
        "timeout_s",
        type=float,
        default=DEFAULT_JOB_TIMEOUT_S,
        callback=_positive,
        metavar="SECONDS",
        help=help_text,
    )


COMMAND_TIMEOUT_HELP = "Seconds the node may take for the command."
DEFERRAL_HELP = """

When the job's node is offline or lost, the desired state is stored and the
controller applies it when the node returns. The command prints that in one
line and exits 0.
"""
STOPPING_TIMEOUT_HELP = (
    "Seconds the node may take for the command, on top of the job's "
    f"stop_grace_period ({DOCKER_STOP_GRACE_S:g} s when the job sets none)."
)
EXIT_CODES_EPILOG = """\b
Exit codes:
  0  ok
  1  failed: any other error
  2  usage: an invalid option or argument
  3  invalid: the job file or request is invalid
  4  not found: no such job, node or container
  5  conflict: the job exists, is in the wrong state, or another controller
     serves the prefix
  6  unavailable: NATS, the controller or the node is offline or unreachable
  7  timeout: no reply within the time limit
"""


@click.group(
    cls=ControllerGroup,
    epilog=EXIT_CODES_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.option(
    "--nats",
    "nats_url",
    envvar="NATS_URL",
    show_envvar=True,
    default=DEFAULT_NATS_URL,
    callback=_check_nats_url,
    metavar="URL",
    help="NATS server URL, or several separated by commas.",
)
@click.option(
    "--creds",
    type=click.Path(exists=True, dir_okay=False),
    envvar="NATS_CREDS",
    show_envvar=True,
    show_default="none",
    help="NATS credentials file.",
)
@click.option(
    "--user",
    envvar="NATS_USER",
    show_envvar=True,
    metavar="NAME",
    show_default="none",
    help="NATS user name.",
)
@click.option(
    "--password",
    envvar="NATS_PASSWORD",
    show_envvar=True,
    metavar="PASSWORD",
    show_default="none",
    help="NATS password for --user.",
)
@click.option(
    "--token",
    envvar="NATS_TOKEN",
    show_envvar=True,
    metavar="TOKEN",
    show_default="none",
    help="NATS authentication token.",
)
@click.option(
    "--prefix",
    default=DEFAULT_PREFIX,
    metavar="PREFIX",
    callback=_check_prefix,
    help="Subject prefix of the system.",
)
@click.pass_context
def cli(ctx, nats_url, creds, user, password, token, prefix) -> None:
    """Schedule Docker containers onto edge nodes and drive their lifecycle."""
    options = NatsOptions(nats_url, creds, user, password, token)
    ctx.obj = Settings(options, prefix)


@cli.command()
@click.option(
    "--offline-after",
    type=click.IntRange(min=1),
    default=DEFAULT_MISSED_HEARTBEATS,
    metavar="N",
    help="Number of heartbeat intervals without a heartbeat after which a node "
    "is lost; a node offline after an announced disconnect is lost this long "
    "after its planned return.",
)
@click.option(
    "--ping-interval",
    "ping_interval_s",
    type=float,
    default=DEFAULT_PING_INTERVAL_S,
    callback=_positive,
    metavar="SECONDS",
    help="Seconds between pings to each online node, which measure its round trip.",
)
@click.option(
    "--reconcile-interval",
    "reconcile_interval_s",
    type=float,
    default=DEFAULT_INTERVAL_S,
    callback=_positive,
    metavar="SECONDS",
    help="Seconds between reconcile passes.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="none: the defaults in the README",
    help="YAML file with a placement section: the default strategy, "
    "spread_over, the weights of the load scorers (cpu, memory, accelerator, "
    "link, jobs) and start_time. See the README.",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=None,
    show_default="load, or the config file's",
    help="Placement strategy for jobs that do not set placement.strategy.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    help="Lowest level of log lines written to stderr.",
)
@click.pass_obj
def serve(
    settings: Settings,
    offline_after,
    ping_interval_s,
    reconcile_interval_s,
    config_file,
    strategy,
    log_level,
) -> None:
    """Run the controller service until SIGTERM or Ctrl-C."""
    placement = _placement_config(config_file, strategy)
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = ControllerConfig(
        nats=settings.nats,
        prefix=settings.prefix,
        missed_heartbeats=offline_after,
        reconcile_interval_s=reconcile_interval_s,
        ping_interval_s=ping_interval_s,
        placement=placement,
    )
    asyncio.run(serve_until_signal(config))


def _placement_config(path: str | None, strategy: str | None) -> PlacementConfig:
    """Return the config file's placement section with --strategy applied."""
    try:
        placement = load_config_file(path).placement if path else PlacementConfig()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    if strategy is None:
        return placement
    try:
        return msgspec.structs.replace(placement, strategy=strategy)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--strategy") from None


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--no-wait",
    is_flag=True,
    show_default="off",
    help="Return once the job is stored and placed, without waiting until it runs.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=DEFAULT_SUBMIT_TIMEOUT_S,
    callback=_positive,
    metavar="SECONDS",
    help="Seconds to wait until the job runs.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    show_default="off",
    help="Only show where the job would go: each node's score or the filter "
    "that rules it out, and the node chosen for each copy. Nothing is stored "
    "or created. Exits with 6 when some copy fits no node.",
)
@json_option
@click.pass_obj
def submit(settings: Settings, file, no_wait, timeout_s, dry_run, as_json) -> None:
    """Place the job in FILE on a node, create and start its container.

    A job with `count: N` runs N copies, jobs named NAME-0 to NAME-(N-1),
    placed one after another by the job's strategy (`placement.strategy`,
    else the controller's default).
    """
    spec = load_job_file(file)
    request = SubmitRequest(
        spec=spec, wait=not no_wait, timeout_s=timeout_s, dry_run=dry_run
    )
    reply = _call(settings, "submit", request, timeout_s)
    if dry_run:
        _print_plan(reply.plan, as_json)
    elif reply.jobs:
        _print_jobs(reply.jobs, as_json)
    else:
        _print_job(reply.job, as_json)


def _print_plan(plan: PlacementPlan, as_json: bool) -> None:
    if as_json:
        click.echo(output.to_json(plan))
    else:
        output.console().print(output.plan_table(plan))
        for line in output.plan_choices(plan):
            click.echo(line)
    if None in plan.chosen:
        raise click.exceptions.Exit(ExitCode.UNAVAILABLE)


@cli.command()
@json_option
@click.pass_obj
def jobs(settings: Settings, as_json) -> None:
    """List jobs with their node, desired state and state.

    The table is followed by the error of each failed job.
    """
    reply = _call(settings, "jobs", ListRequest(), DEFAULT_JOB_TIMEOUT_S)
    if as_json:
        click.echo(output.to_json(reply.jobs or []))
    else:
        output.console().print(output.job_table(reply.jobs or []))
        for job in reply.jobs or []:
            if job.state == "failed":
                click.echo(f"{job.name}: {job.message}")


@cli.command()
@json_option
@click.pass_obj
def nodes(settings: Settings, as_json) -> None:
    """List nodes with their state, load, last heartbeat, RTT and link rate.

    A node is online, offline (an announced disconnect, with its planned
    return) or lost (no heartbeats for longer than the limit). The table
    shows RTT and link rate only for online nodes; --json keeps the last
    values of every node.
    """
    reply = _call(settings, "nodes", ListRequest(), DEFAULT_JOB_TIMEOUT_S)
    if as_json:
        click.echo(output.to_json(reply.nodes or []))
    else:
        output.console().print(output.node_table(reply.nodes or []))


def _lifecycle_command(verb: str, summary: str) -> None:
    stopping = verb in _STOPPING_VERBS

    @cli.command(name=verb, help=summary + DEFERRAL_HELP)
    @job_argument
    @json_option
    @timeout_option(STOPPING_TIMEOUT_HELP if stopping else COMMAND_TIMEOUT_HELP)
    @click.option(
        "--wait",
        is_flag=True,
        show_default="off",
        help="When the job's node is offline or lost, wait up to --timeout "
        "seconds for the job to reach its desired state.",
    )
    @click.pass_obj
    def command(settings: Settings, job, as_json, timeout_s, wait) -> None:
        request = JobRequest(job=job, timeout_s=timeout_s)
        grace_s = _stop_grace_s(settings, job) if stopping else 0.0
        reply = _call(settings, verb, request, timeout_s, grace_s)
        if reply.node is None:
            _print_job(reply.job, as_json)
            return
        deferral = output.describe_deferral(reply.job, reply.node)
        if not wait:
            click.echo(output.to_json(reply.job) if as_json else deferral)
            return
        click.echo(deferral, err=True)
        final = _wait_for_desired(settings, reply.job, timeout_s + grace_s)
        if final is None:
            click.echo(output.to_json(None) if as_json else f"{job} removed")
        else:
            _print_job(final, as_json)


def _wait_for_desired(settings: Settings, job: JobView, timeout_s: float):
    async def wait():
        async with settings.client() as api:
            return await wait_for_desired(api, job.name, job.desired, timeout_s)

    return asyncio.run(wait())


def _stop_grace_s(settings: Settings, job: str) -> float:
    """Return the job's stop grace, so the CLI waits for a slow stop to finish."""
    reply = _call(settings, "jobs", ListRequest(), DEFAULT_JOB_TIMEOUT_S)
    view = next((view for view in reply.jobs or [] if view.name == job), None)
    return stop_grace_or_default(view.stop_grace_s if view else None)


_lifecycle_command(
    "start", "Start the container of JOB; its desired state becomes running."
)
_lifecycle_command(
    "stop", "Stop the container of JOB; its desired state becomes stopped."
)
_lifecycle_command(
    "pause", "Pause the container of JOB; its desired state becomes paused."
)
_lifecycle_command(
    "unpause", "Unpause the container of JOB; its desired state becomes running."
)
_lifecycle_command("remove", "Remove the container of JOB and forget the job.")


@cli.command()
@job_argument
@timeout_option(COMMAND_TIMEOUT_HELP)
@click.pass_obj
def inspect(settings: Settings, job, timeout_s) -> None:
    """Print JOB, its spec as submitted and its container as JSON.

    When the job's node is offline or lost, the command returns at once: the
    container's state is "unknown", with what the node last reported under
    "last_reported", and a note on stderr names the node and when it is
    expected back.
    """
    reply = _call(
        settings, "inspect", JobRequest(job=job, timeout_s=timeout_s), timeout_s
    )
    container = reply.container
    if reply.node is not None:
        container = {"state": "unknown", "last_reported": reply.container}
    document = {"job": reply.job, "spec": reply.spec, "container": container}
    click.echo(output.to_json(document))
    note = output.inspect_note(reply.job, reply.container, reply.node)
    if note is not None:
        click.echo(f"Note: {note}", err=True)


@cli.command()
@job_argument
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    default=DEFAULT_TAIL,
    metavar="N",
    help="Number of lines from the end of the log.",
)
@click.pass_obj
def logs(settings: Settings, job, tail) -> None:
    """Print the log of JOB's container.

    Exits with code 6 at once when the job's node is offline or lost.
    """
    reply = _call(
        settings, "logs", LogsRequest(job=job, tail=tail), DEFAULT_JOB_TIMEOUT_S
    )
    click.echo(reply.logs or "", nl=False)


@cli.command()
@json_option
@click.option(
    "--count",
    type=click.IntRange(min=1),
    metavar="N",
    show_default="never",
    help="Stop after N events.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    callback=_positive,
    metavar="SECONDS",
    show_default="never",
    help="Stop after this many seconds.",
)
@click.pass_obj
def watch(settings: Settings, as_json, count, timeout_s) -> None:
    """Print node and job events as they happen, until Ctrl-C."""

    def show(subject: str, event: dict) -> None:
        if as_json:
            click.echo(output.event_json(subject, event))
        else:
            click.echo(output.event_line(settings.prefix, subject, event))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch_events(settings.client(), show, count, timeout_s))


def _check_node(ctx, param, value: str) -> str:
    try:
        return check_name(value, "node name")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


PROBE_HELP = f"""Measure NODE's round trip, uplink and downlink rates through its shaper.

The probes go straight to the node's agent over NATS, so no controller
needs to run. The uplink is the agent's sending direction.

After the round trips, the command estimates from the link rate the agent
reports how long the K probes of N bytes take each way. If that is longer
than --timeout, it exits with code 3 before it sends them, because a train
it gave up on would keep the node's link busy. Exit code 6 means that no
agent of NODE is connected, or that the first probe got no reply within
{FIRST_REPLY_TIMEOUT_S:g} s (or --timeout, if shorter).
"""


@cli.command(help=PROBE_HELP)
@click.argument("node", callback=_check_node)
@click.option(
    "--bytes",
    "size_bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_PROBE_BYTES,
    metavar="N",
    help="Bytes of padding in each uplink reply and each downlink command; at "
    f"most the server's max payload minus {ENVELOPE_BYTES}.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=DEFAULT_PROBE_COUNT,
    metavar="K",
    help="Probes per measure: K round trips, and K probes sent at once for each rate.",
)
@timeout_option(
    f"Seconds each probe may take; the first waits at most {FIRST_REPLY_TIMEOUT_S:g} s."
)
@json_option
@click.pass_obj
def probe(settings: Settings, node, size_bytes, count, timeout_s, as_json) -> None:
    measure = asyncio.run(_probe(settings, node, size_bytes, count, timeout_s))
    if as_json:
        click.echo(output.to_json(measure))
    else:
        click.echo("\n".join(output.describe_link(measure)))


async def _probe(settings: Settings, node, size_bytes, count, timeout_s):
    client = await connect_once(settings.nats, "dsched-probe")
    try:
        limit = max_probe_bytes(client.max_payload)
        if size_bytes > limit:
            raise InvalidRequestError(
                f"--bytes {size_bytes} is more than the server carries: its max "
                f"payload is {client.max_payload} bytes, minus {ENVELOPE_BYTES} for "
                f"the rest of the message; use --bytes {limit} or less"
            )
        prober = LinkProber(client, Subjects(settings.prefix), node, timeout_s)
        return await prober.measure(size_bytes, count)
    finally:
        await client.close()


def _call(
    settings: Settings, verb: str, request, timeout_s: float, extra_s: float = 0.0
):
    """Send an API request, waiting `timeout_s` plus `extra_s` plus a margin.

    A timeout error names `timeout_s`, the user's --timeout.
    """

    async def call():
        async with settings.client() as api:
            return await api.call(
                verb, request, timeout_s, extra_s=extra_s + REPLY_MARGIN_S
            )

    return asyncio.run(call())


def _print_job(job, as_json: bool) -> None:
    if as_json:
        click.echo(output.to_json(job))
    else:
        click.echo(output.describe_job(job))


def _print_jobs(jobs: list[JobView], as_json: bool) -> None:
    if as_json:
        click.echo(output.to_json(jobs))
    else:
        for job in jobs:
            click.echo(output.describe_job(job))


def main() -> None:
    cli(prog_name="controller")
