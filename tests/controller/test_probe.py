import asyncio
import json

import pytest
from click.testing import CliRunner

from controller.cli import ExitCode, cli
from controller.errors import InvalidRequestError
from controller.output import describe_link
from controller.probe import (
    Burst,
    LinkMeasure,
    check_trains_fit,
    max_probe_bytes,
    rate_bps,
)
from tests.controller.helpers import monitor

RATE_TOLERANCE = 0.15
SHAPED_RATE_BPS = 20e6


def test_rate_from_first_and_last_arrival():
    burst = Burst(size_bytes=1000, started_s=0.0, arrivals_s=[1.0, 1.2, 1.4, 1.8])

    rate = rate_bps(burst, rtt_s=0.5)

    assert rate == pytest.approx(3 * 1000 * 8 / 0.8)


def test_single_probe_rate_subtracts_round_trip():
    burst = Burst(size_bytes=1000, started_s=10.0, arrivals_s=[10.5])

    rate = rate_bps(burst, rtt_s=0.1)

    assert rate == pytest.approx(1000 * 8 / 0.4)


def test_rate_unknown_for_equal_arrivals():
    burst = Burst(size_bytes=1000, started_s=0.0, arrivals_s=[1.0, 1.0])

    assert rate_bps(burst, rtt_s=0.1) is None


def test_rate_unknown_within_round_trip():
    burst = Burst(size_bytes=1000, started_s=0.0, arrivals_s=[0.1])

    assert rate_bps(burst, rtt_s=0.2) is None


def test_max_probe_bytes_leaves_envelope():
    assert max_probe_bytes(1048576) == 1048576 - 4096


def test_link_lines_show_each_measure():
    measure = LinkMeasure(
        node="n1",
        rtt_ms=1.234,
        uplink_bps=19.8e6,
        downlink_bps=None,
        bytes=262144,
        count=5,
    )

    lines = describe_link(measure)

    assert lines == [
        "rtt       1.23 ms (median of 5)",
        "uplink    19.8 Mbit/s (5 replies with 262144 bytes of padding)",
        "downlink  too fast to measure, raise --bytes (5 commands with 262144 "
        "bytes of padding)",
    ]


def test_slow_link_trains_over_timeout_rejected():
    with pytest.raises(InvalidRequestError) as caught:
        check_trains_fit(100e3, 262144, 5, timeout_s=30.0)

    assert str(caught.value) == (
        "at 100.0 kbit/s, 5 probes of 262144 bytes take about 105 s each way, "
        "over --timeout 30 s; pass a smaller --bytes or --count, or a larger "
        "--timeout"
    )


def test_trains_within_timeout_pass():
    check_trains_fit(20e6, 262144, 5, timeout_s=30.0)


def test_unshaped_link_trains_pass():
    check_trains_fit(None, 262144, 5, timeout_s=0.1)


def probe(url, *args):
    return CliRunner().invoke(cli, ["--nats", url, "probe", *args])


def test_probe_of_unknown_node_fails(nats_server, unique_name):
    node = unique_name("node")

    result = probe(nats_server.url, node)

    assert result.exit_code == ExitCode.UNAVAILABLE, result.output
    assert result.stderr == (
        f"Error: node {node!r} is offline or unknown: no agent subscribes on "
        f"dsched.node.{node}.cmd; see `controller nodes`\n"
    )


def test_probe_rejects_bytes_above_payload(nats_server, unique_name):
    result = probe(nats_server.url, unique_name("node"), "--bytes", "2000000")

    assert result.exit_code == ExitCode.INVALID, result.output
    assert "its max payload is 1048576 bytes" in result.stderr
    assert "use --bytes 1044480 or less" in result.stderr


def test_probe_measures_shaped_link(fleet, cleanup_node, unique_name):
    node = cleanup_node(unique_name("shaped"))
    fleet.start_agent("--bandwidth", "20Mbit", node=node)

    result = probe(fleet.url, node, "--json")

    assert result.exit_code == ExitCode.OK, result.output
    measure = json.loads(result.stdout)
    assert measure["node"] == node
    assert measure["bytes"] == 262144
    assert measure["count"] == 5
    assert measure["rtt_ms"] > 0
    assert measure["uplink_bps"] == pytest.approx(SHAPED_RATE_BPS, rel=RATE_TOLERANCE)
    assert measure["downlink_bps"] == pytest.approx(SHAPED_RATE_BPS, rel=RATE_TOLERANCE)


def test_probe_of_slow_link_rejected(fleet, cleanup_node, unique_name):
    node = cleanup_node(unique_name("slow"))
    fleet.start_agent("--bandwidth", "100kbit", node=node)

    result = probe(fleet.url, node, "--timeout", "10")

    assert result.exit_code == ExitCode.INVALID, result.output
    assert result.stderr == (
        "Error: at 100.0 kbit/s, 5 probes of 262144 bytes take about 105 s each "
        "way, over --timeout 10 s; pass a smaller --bytes or --count, or a "
        "larger --timeout\n"
    )


async def test_probe_without_reply_unavailable(nats_server, unique_name):
    node = unique_name("node")

    async with monitor(nats_server.url):
        result = await asyncio.to_thread(probe, nats_server.url, node, "--timeout", "1")

    assert result.exit_code == ExitCode.UNAVAILABLE, result.output
    assert result.stderr == (
        f"Error: node {node} did not reply within 1 s: no agent of {node} is "
        "connected, or its link is saturated\n"
    )
