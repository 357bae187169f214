import pytest

from controller.output import (
    describe_job,
    event_json,
    event_kind,
    event_line,
    format_ports,
)
from schemas.messages import JobView, PublishedPort

PORT = PublishedPort(
    container_port=80, protocol="tcp", host_ip="127.0.0.1", host_port=8080
)


def test_running_job_line_names_everything():
    job = JobView(
        name="web",
        desired="running",
        state="running",
        node="demo-01",
        container_id="3f2a" * 16,
        ports=[PORT],
    )

    line = describe_job(job)

    assert line == (
        "web running on node demo-01, container 3f2a3f2a3f2a, "
        "ports 127.0.0.1:8080->80/tcp"
    )


def test_ports_without_host_ip():
    port = PublishedPort(container_port=53, protocol="udp", host_ip="", host_port=53)

    text = format_ports([port])

    assert text == "0.0.0.0:53->53/udp"


@pytest.mark.parametrize(
    ("subject", "kind", "name"),
    [
        ("dsched.node.n1.evt.online", "node.online", "n1"),
        ("dsched.node.n1.evt.link.down", "node.link.down", "n1"),
        ("dsched.job.web.evt", "job", "web"),
        ("other.subject", "other.subject", "-"),
    ],
)
def test_event_kind_from_subject(subject, kind, name):
    result = event_kind("dsched", subject)

    assert result == (kind, name)


def test_job_event_line_shows_states():
    event = {"job": "web", "state": "running", "desired": "running", "node": "n1"}

    line = event_line("dsched", "dsched.job.web.evt", event)

    assert line.endswith("running (desired running) on node n1")
    assert " job " in line
    assert " web " in line


def test_event_json_is_one_compact_line():
    event = {"job": "web", "state": "running", "labels": {"zone": "a b"}}

    line = event_json("dsched.job.web.evt", event)

    assert line == (
        '{"subject":"dsched.job.web.evt","event":{"job":"web","state":"running",'
        '"labels":{"zone":"a b"}}}'
    )
