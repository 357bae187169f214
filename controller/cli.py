"""The `controller` command: `serve` runs the service, the others call its API."""

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass

import click

from controller import output
from controller.agents import stop_grace_or_default
from controller.client import ApiClient
from controller.connection import DEFAULT_NATS_URL, NatsOptions, check_nats_url
from controller.errors import ControllerError
from controller.lifecycle import missing_container_message
from controller.reconciler import DEFAULT_INTERVAL_S
from controller.registry import DEFAULT_MISSED_HEARTBEATS
from controller.service import ControllerConfig, serve_until_signal
from controller.watch import watch_events
from schemas.jobfile import JobFileError, load_job_file
from schemas.messages import (
    JobRequest,
    ListRequest,
    LogsRequest,
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
        raise click.BadParameter(str(exc)) from exc


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
    help="Print JSON for scripts; default a line or table.",
)
timeout_option = click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=DEFAULT_JOB_TIMEOUT_S,
    callback=_positive,
    help="Seconds the node may take for the command; default "
    f"{DEFAULT_JOB_TIMEOUT_S:g}. A stop also waits the job's stop_grace_period.",
)
job_argument = click.argument("job", callback=_check_job)


@click.group(cls=ControllerGroup)
@click.option(
    "--nats",
    "nats_url",
    envvar="NATS_URL",
    default=DEFAULT_NATS_URL,
    callback=_check_nats_url,
    metavar="URL",
    help=f"NATS server URL; default $NATS_URL, else {DEFAULT_NATS_URL}.",
)
@click.option(
    "--creds",
    type=click.Path(exists=True, dir_okay=False),
    envvar="NATS_CREDS",
    help="NATS credentials file; default $NATS_CREDS, else none.",
)
@click.option(
    "--user",
    envvar="NATS_USER",
    help="NATS user name; default $NATS_USER, else none.",
)
@click.option(
    "--password",
    envvar="NATS_PASSWORD",
    help="NATS password for --user; default $NATS_PASSWORD, else none.",
)
@click.option(
    "--token",
    envvar="NATS_TOKEN",
    help="NATS authentication token; default $NATS_TOKEN, else none.",
)
@click.option(
    "--prefix",
    default=DEFAULT_PREFIX,
    callback=_check_prefix,
    help=f"Subject prefix of the system; default {DEFAULT_PREFIX}.",
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
    help="Heartbeat intervals without a heartbeat after which a node is offline; "
    f"default {DEFAULT_MISSED_HEARTBEATS}.",
)
@click.option(
    "--reconcile-interval",
    "reconcile_interval_s",
    type=float,
    default=DEFAULT_INTERVAL_S,
    callback=_positive,
    metavar="S",
    help=f"Seconds between reconcile passes; default {DEFAULT_INTERVAL_S:g}.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    help="Lowest level of log lines written to stderr; default info.",
)
@click.pass_obj
def serve(settings: Settings, offline_after, reconcile_interval_s, log_level) -> None:
    """Run the controller service until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = ControllerConfig(
        nats=settings.nats,
        prefix=settings.prefix,
        missed_heartbeats=offline_after,
        reconcile_interval_s=reconcile_interval_s,
    )
    asyncio.run(serve_until_signal(config))


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--no-wait",
    is_flag=True,
    help="Return once the job is stored and placed; default wait until it runs.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=DEFAULT_SUBMIT_TIMEOUT_S,
    callback=_positive,
    help=f"Seconds to wait until the job runs; default {DEFAULT_SUBMIT_TIMEOUT_S:g}.",
)
@json_option
@click.pass_obj
def submit(settings: Settings, file, no_wait, timeout_s, as_json) -> None:
    """Place the job in FILE on a node, create and start its container."""
    spec = load_job_file(file)
    request = SubmitRequest(spec=spec, wait=not no_wait, timeout_s=timeout_s)
    reply = _call(settings, "submit", request, timeout_s)
    _print_job(reply.job, as_json)


@cli.command()
@json_option
@click.pass_obj
def jobs(settings: Settings, as_json) -> None:
    """List jobs with their node, desired state and state."""
    reply = _call(settings, "jobs", ListRequest(), DEFAULT_JOB_TIMEOUT_S)
    if as_json:
        click.echo(output.to_json(reply.jobs or []))
    else:
        output.console().print(output.job_table(reply.jobs or []))


@cli.command()
@json_option
@click.pass_obj
def nodes(settings: Settings, as_json) -> None:
    """List nodes with their state, device type and load."""
    reply = _call(settings, "nodes", ListRequest(), DEFAULT_JOB_TIMEOUT_S)
    if as_json:
        click.echo(output.to_json(reply.nodes or []))
    else:
        output.console().print(output.node_table(reply.nodes or []))


def _lifecycle_command(verb: str, summary: str) -> None:
    @cli.command(name=verb, help=summary)
    @job_argument
    @json_option
    @timeout_option
    @click.pass_obj
    def command(settings: Settings, job, as_json, timeout_s) -> None:
        request = JobRequest(job=job, timeout_s=timeout_s)
        wait_s = timeout_s
        if verb in _STOPPING_VERBS:
            wait_s += _stop_grace_s(settings, job)
        reply = _call(settings, verb, request, wait_s)
        _print_job(reply.job, as_json)


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
@timeout_option
@click.pass_obj
def inspect(settings: Settings, job, timeout_s) -> None:
    """Print JOB, its spec as submitted and its container as JSON."""
    reply = _call(
        settings, "inspect", JobRequest(job=job, timeout_s=timeout_s), timeout_s
    )
    document = {"job": reply.job, "spec": reply.spec, "container": reply.container}
    click.echo(output.to_json(document))
    if reply.container is None and reply.job.node is not None:
        note = missing_container_message(reply.job.name, reply.job.node)
        click.echo(f"Note: {note}", err=True)


@cli.command()
@job_argument
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    default=DEFAULT_TAIL,
    metavar="N",
    help=f"Number of lines from the end of the log; default {DEFAULT_TAIL}.",
)
@click.pass_obj
def logs(settings: Settings, job, tail) -> None:
    """Print the log of JOB's container."""
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
    help="Stop after N events; default never.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    callback=_positive,
    help="Stop after this many seconds; default never.",
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


def _call(settings: Settings, verb: str, request, timeout_s: float):
    async def call():
        async with settings.client() as api:
            return await api.call(verb, request, timeout_s + REPLY_MARGIN_S)

    return asyncio.run(call())


def _print_job(job, as_json: bool) -> None:
    if as_json:
        click.echo(output.to_json(job))
    else:
        click.echo(output.describe_job(job))


def main() -> None:
    cli(prog_name="controller")
