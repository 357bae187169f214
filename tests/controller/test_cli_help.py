import click
import pytest
from click.testing import CliRunner

from controller.cli import ExitCode, cli

COMMANDS = sorted(cli.commands)
STOPPING = {"stop", "remove"}


def options_of(command: click.Command) -> list[click.Option]:
    return [
        param
        for param in command.params
        if isinstance(param, click.Option) and param.name != "help"
    ]


def context_of(name: str) -> click.Context:
    parent = cli.make_context("controller", ["jobs"], resilient_parsing=True)
    return click.Context(cli.commands[name], info_name=name, parent=parent)


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_short_help_option_works(name):
    args = [name, "-h"] if name else ["-h"]

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.startswith("Usage: ")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_shows_default(name):
    context = context_of(name)

    for option in options_of(cli.commands[name]):
        extra = option.get_help_extra(context)
        assert "default" in extra, f"{name} {option.opts[0]}"


def test_group_options_show_default():
    context = cli.make_context("controller", ["jobs"], resilient_parsing=True)

    for option in options_of(cli):
        assert "default" in option.get_help_extra(context), option.opts[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_seconds_options_use_seconds_metavar(name):
    command = cli.commands[name]

    for option in options_of(command):
        if option.name.endswith("_s"):
            assert option.metavar == "SECONDS", f"{name} {option.opts[0]}"


@pytest.mark.parametrize(
    "name", ["start", "pause", "unpause", "inspect", "stop", "remove"]
)
def test_timeout_help_names_grace_only_when_stopping(name):
    timeout = next(o for o in options_of(cli.commands[name]) if o.name == "timeout_s")

    mentions_grace = "stop_grace_period" in timeout.help

    assert mentions_grace == (name in STOPPING)


def test_help_lists_exit_codes():
    result = CliRunner().invoke(cli, ["--help"])

    for code in ExitCode:
        assert f"  {code.value}  " in result.stdout, code.name
