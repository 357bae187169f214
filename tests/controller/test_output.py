import datetime

import pytest
from rich.console import Console

from controller.output import (
    accelerator_cell,
    describe_job,
    event_json,
    event_kind,
    event_line,
    format_ports,
    format_rate,
    inspect_note,
    node_table,
    planned_return,
    seconds_ago,
)
from schemas.messages import (
    Accelerator,
    ContainerInfo,
    JobView,
    NodeView,
    PublishedPort,
)

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


def node_view(**fields) -> NodeView:
    return NodeView(name="n1", device_type="x86", last_seen=100.0, **fields)


def test_seconds_ago_has_one_decimal():
    text = seconds_ago(100.0, now=103.25)

    assert text == "3.2s ago"


def test_planned_return_of_offline_node():
    node = node_view(state="offline", planned_return=110.0)

    text = planned_return(node, now=104.0)

    assert text.endswith("(in 6.0s)")


def test_planned_return_blank_when_online():
    node = node_view(state="online", planned_return=None)

    text = planned_return(node, now=104.0)

    assert text == "-"


@pytest.mark.parametrize(
    ("rate_bps", "text"),
    [
        (None, "-"),
        (20e6, "20.0 Mbit/s"),
        (1.5e9, "1.5 Gbit/s"),
        (512e3, "512.0 kbit/s"),
        (12, "12 bit/s"),
    ],
)
def test_format_rate_units(rate_bps, text):
    result = format_rate(rate_bps)

    assert result == text


def table_text(nodes, now):
    console = Console(width=200, color_system=None)
    with console.capture() as capture:
        console.print(node_table(nodes, now=now))
    return capture.get()


def row_cells(text: str, name: str) -> list[str]:
    """Return the cells of the table row that starts with `name`."""
    row = next(line for line in text.splitlines() if f" {name} " in line)
    return [cell.strip() for cell in row.split("│")[1:-1]]


def test_node_table_shows_link_columns():
    node = node_view(state="online", rtt_ms=2.54, link_rate_bps=20e6)

    text = table_text([node], now=103.0)

    assert "3.0s ago" in text
    assert "2.5 ms" in text
    assert "20.0 Mbit/s" in text


def test_node_table_hides_link_of_offline_node():
    node = node_view(
        state="offline", planned_return=110.0, rtt_ms=2.54, link_rate_bps=20e6
    )

    text = table_text([node], now=103.0)

    assert "(in 7.0s)" in text
    assert "offline" in text
    assert "2.5 ms" not in text
    assert "Mbit/s" not in text
    assert row_cells(text, "n1")[-2:] == ["-", "-"]


def test_node_table_hides_link_of_lost_node():
    node = node_view(state="lost", rtt_ms=2.54, link_rate_bps=20e6)

    text = table_text([node], now=103.0)

    assert "2.5 ms" not in text
    assert "Mbit/s" not in text


def clock(timestamp: float) -> str:
    return f"{datetime.datetime.fromtimestamp(timestamp):%H:%M:%S}"


def test_job_event_message_after_separator():
    event = {
        "job": "web",
        "state": "running",
        "desired": "paused",
        "node": "n1",
        "message": "waiting for node n1 to return",
    }

    line = event_line("dsched", "dsched.job.web.evt", event)

    assert line.endswith(
        "running (desired paused) on node n1; waiting for node n1 to return"
    )


def test_node_state_event_shows_message():
    event = {"node": "n1", "state": "lost", "time": 100.0, "message": "no heartbeat"}

    line = event_line("dsched", "dsched.node.n1.evt.lost", event)

    assert line.endswith(" n1                   no heartbeat")


def test_announced_link_down_line():
    event = {
        "v": 1,
        "node": "n1",
        "state": "down",
        "time": 100.0,
        "mode": "announced",
        "planned_return": 110.0,
        "offline_s": None,
        "next_disconnect_at": None,
        "buffered_events": 0,
        "dropped_events": 0,
    }

    line = event_line("dsched", "dsched.node.n1.evt.link", event)

    assert line.endswith(f"link down (announced), back at {clock(110.0)}")


def test_link_up_line_counts_events():
    event = {
        "v": 1,
        "node": "n1",
        "state": "up",
        "time": 100.0,
        "mode": "abrupt",
        "planned_return": None,
        "offline_s": 10.004088615,
        "next_disconnect_at": None,
        "buffered_events": 3,
        "dropped_events": 1,
    }

    line = event_line("dsched", "dsched.node.n1.evt.link", event)

    assert line.endswith(
        "link up after 10.0 s offline (abrupt), 3 events kept, 1 dropped"
    )


def test_link_up_line_names_next_disconnect():
    event = {
        "node": "n1",
        "state": "up",
        "time": 100.0,
        "mode": "announced",
        "offline_s": 2.0,
        "next_disconnect_at": 160.0,
        "buffered_events": 1,
        "dropped_events": 0,
    }

    line = event_line("dsched", "dsched.node.n1.evt.link", event)

    assert line.endswith(
        "link up after 2.0 s offline (announced), 1 event kept, 0 dropped, "
        f"next disconnect at {clock(160.0)}"
    )


def test_rate_event_line():
    event = {
        "v": 1,
        "node": "n1",
        "time": 100.0,
        "rate_bps": 20e6,
        "previous_bps": None,
        "source": "fixed",
    }

    line = event_line("dsched", "dsched.node.n1.evt.rate", event)

    assert line.endswith(" n1                   rate 20.0 Mbit/s (fixed)")


def test_rate_event_line_names_previous_rate():
    event = {
        "node": "n1",
        "time": 100.0,
        "rate_bps": 5e6,
        "previous_bps": 50e6,
        "source": "fluctuate",
    }

    line = event_line("dsched", "dsched.node.n1.evt.rate", event)

    assert line.endswith("rate 5.0 Mbit/s (fluctuate), was 50.0 Mbit/s")


def test_inspect_note_for_removed_job():
    job = JobView(name="web", desired="removed", state="running", node="n1")

    note = inspect_note(job, container=None, node=None)

    assert note == (
        "job 'web' has no container on node 'n1' and its desired state is "
        "removed; the controller deletes the job shortly"
    )


def test_inspect_note_for_missing_container():
    job = JobView(name="web", desired="running", state="missing", node="n1")

    note = inspect_note(job, container=None, node=None)

    assert "`controller start web` recreates it" in note


def test_inspect_note_for_offline_node():
    job = JobView(name="web", desired="running", state="running", node="n1")
    node = node_view(state="offline", planned_return=110.0)

    note = inspect_note(job, container=None, node=node, now=104.0)

    assert note == (
        f"node n1 is offline, planned return {clock(110.0)} (in 6.0s); the "
        "container's state is unknown until the node returns, and the job shows "
        "its last reported state, running"
    )


def test_inspect_note_none_with_container():
    job = JobView(name="web", desired="running", state="running", node="n1")
    container = ContainerInfo(
        id="c1", name="web", job="web", node="n1", image="img", state="running"
    )

    note = inspect_note(job, container=container, node=None)

    assert note is None


@pytest.mark.parametrize(
    ("accelerators", "cell"),
    [
        ([], "-"),
        (
            [
                Accelerator(kind="npu", index=0, util_percent=40.0),
                Accelerator(kind="npu", index=1, util_percent=12.4),
            ],
            "2 npu 40% 12%",
        ),
        ([Accelerator(kind="gpu", index=0)], "1 gpu ?"),
    ],
)
def test_accelerator_cell_table(accelerators, cell):
    view = NodeView(
        name="n1", state="online", device_type="x86", last_seen=0.0,
        accelerators=accelerators,
    )  # fmt: skip

    assert accelerator_cell(view) == cell
