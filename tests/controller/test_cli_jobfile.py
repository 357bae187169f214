"""`controller submit` with a bad job file: one line naming file, line and fix.

The NATS URL points at a closed port, so a test passes only if the file is
rejected before anything is sent.
"""

import pytest
from click.testing import CliRunner

from controller.cli import ExitCode, cli

UNREACHABLE_NATS = "nats://127.0.0.1:1"
HEAD = "name: web\nimage: dsched/busybox:local\n"


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("ports: [80\n", 4, "invalid YAML"),
        ("prts: ['80']\n", 3, "prts: unknown field 'prts'"),
        ("tty: 'yes'\n", 3, "tty: expected 'bool', got 'str'"),
        ("ports:\n  - 22:22\n", 4, 'quote it: "22:22"'),
        ("restart: no\n", 3, 'quote it ("no")'),
        ("labels:\n  version: 1.10\n", 4, 'quote it ("1.10")'),
        ("image: other\n", 3, "duplicate key 'image' (first set on line 2)"),
        ("devices: ['davinci0']\n", 3, "invalid device 'davinci0'"),
    ],
)
def test_submit_rejects_bad_job_file(tmp_path, body, line, fragment):
    path = tmp_path / "job.yaml"
    path.write_text(HEAD + body)

    result = CliRunner().invoke(cli, ["--nats", UNREACHABLE_NATS, "submit", str(path)])

    assert result.exit_code == ExitCode.INVALID
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"{path}:{line}:" in result.stderr
    assert fragment in result.stderr


def test_submit_rejects_invalid_name_in_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: a.b\nimage: x\n")

    result = CliRunner().invoke(cli, ["--nats", UNREACHABLE_NATS, "submit", str(path)])

    assert result.exit_code == ExitCode.INVALID
    assert f"{path}:1: name: invalid job name 'a.b'" in result.stderr
