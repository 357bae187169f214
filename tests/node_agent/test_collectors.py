"""Accelerator collectors: selection by device type, detection, failures, timeouts."""

import logging
import time

import pytest

from node_agent.collectors import (
    AtlasCollector,
    JetsonCollector,
    NvidiaCollector,
    RknpuCollector,
    detect_device_type,
    select_collectors,
)
from tests.node_agent.telemetry_samples import SAMPLES_DIR

NODE = "edge-test"
# A tool that hangs must not hold a heartbeat for longer than its timeout.
SHORT_TIMEOUT_S = 0.3
HANG_S = "5"


@pytest.mark.parametrize(
    ("device_type", "collector"),
    [
        ("ATLAS_I", AtlasCollector),
        ("atlas_200i_a2", AtlasCollector),
        ("RK3588", RknpuCollector),
        ("JETSON_ORIN", JetsonCollector),
        ("JETSON", JetsonCollector),
        ("NVIDIA_GPU", NvidiaCollector),
        ("GPU", NvidiaCollector),
    ],
)
def test_device_type_selects_collector(device_type, collector):
    chosen = select_collectors(device_type, NODE)

    assert [type(item) for item in chosen] == [collector]


@pytest.mark.parametrize("device_type", ["x86", "aarch64", "RK3399", ""])
def test_other_device_types_select_none(device_type):
    assert select_collectors(device_type, NODE) == []


def make_which(*tools):
    return lambda name: f"/usr/bin/{name}" if name in tools else None


def make_exists(*paths):
    return lambda path: path in paths


@pytest.mark.parametrize(
    ("tools", "paths", "expected"),
    [
        (["npu-smi"], [], "ATLAS"),
        ([], ["/sys/kernel/debug/rknpu"], "RK3588"),
        ([], ["/proc/rknpu"], "RK3588"),
        (["tegrastats", "nvidia-smi"], [], "JETSON"),
        (["nvidia-smi"], ["/etc/nv_tegra_release"], "JETSON"),
        (["nvidia-smi"], [], "NVIDIA_GPU"),
    ],
)
def test_detect_device_type(tools, paths, expected):
    detected = detect_device_type(make_which(*tools), make_exists(*paths), "aarch64")

    assert detected == expected


def test_detect_without_accelerators():
    which, exists = make_which(), make_exists()

    assert detect_device_type(which, exists, "x86_64") == "x86"
    assert detect_device_type(which, exists, "aarch64") == "aarch64"


class RecordedAtlas(AtlasCollector):
    command = ["cat", str(SAMPLES_DIR / "npu-smi-310p-four-chips.txt")]


def test_tool_output_reaches_parser():
    chips = RecordedAtlas(NODE).collect()

    assert [chip.index for chip in chips] == [0, 1, 2, 3]


class MissingNvidia(NvidiaCollector):
    command = ["dsched-no-such-tool", "--query-gpu=index"]


def test_missing_tool_logs_once(caplog):
    collector = MissingNvidia(NODE)

    with caplog.at_level(logging.WARNING, logger="node_agent.collectors"):
        results = [collector.collect() for _ in range(3)]

    assert results == [[], [], []]
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert NODE in message
    assert "dsched-no-such-tool not found on PATH" in message


class HangingAtlas(AtlasCollector):
    command = ["sleep", HANG_S]


def test_hanging_tool_times_out(caplog):
    collector = HangingAtlas(NODE, timeout_s=SHORT_TIMEOUT_S)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="node_agent.collectors"):
        chips = collector.collect()
    elapsed_s = time.monotonic() - started

    assert chips == []
    assert elapsed_s < float(HANG_S) / 2
    assert "timed out after 0.3 s" in caplog.records[0].getMessage()


class FailingAtlas(AtlasCollector):
    command = ["sh", "-c", "echo 'dcmi module initialize failed' >&2; exit 3"]


def test_failing_tool_reports_stderr(caplog):
    with caplog.at_level(logging.WARNING, logger="node_agent.collectors"):
        chips = FailingAtlas(NODE).collect()

    assert chips == []
    message = caplog.records[0].getMessage()
    assert "exited with 3: dcmi module initialize failed" in message


class GarbageNvidia(NvidiaCollector):
    command = ["echo", "No devices were found"]


def test_unparsable_output_logs_once(caplog):
    collector = GarbageNvidia(NODE)

    with caplog.at_level(logging.WARNING, logger="node_agent.collectors"):
        results = [collector.collect(), collector.collect()]

    assert results == [[], []]
    assert len(caplog.records) == 1
    assert "nvidia-smi reported no accelerator" in caplog.records[0].getMessage()


class StreamingTegrastats(JetsonCollector):
    command = [
        "sh",
        "-c",
        f"cat {SAMPLES_DIR / 'tegrastats-orin.txt'}; sleep {HANG_S}",
    ]


def test_tegrastats_first_line_then_stopped():
    started = time.monotonic()
    (gpu,) = StreamingTegrastats(NODE, timeout_s=SHORT_TIMEOUT_S * 10).collect()
    elapsed_s = time.monotonic() - started

    assert gpu.util_percent == 12.0
    assert elapsed_s < float(HANG_S) / 2


class SilentTegrastats(JetsonCollector):
    command = ["sleep", HANG_S]


def test_silent_tegrastats_times_out(caplog):
    with caplog.at_level(logging.WARNING, logger="node_agent.collectors"):
        gpus = SilentTegrastats(NODE, timeout_s=SHORT_TIMEOUT_S).collect()

    assert gpus == []
    assert "printed no line within 0.3 s" in caplog.records[0].getMessage()


class JetsonWithoutTegrastats(JetsonCollector):
    command = ["dsched-no-tegrastats"]
    load_paths = ["/nonexistent/load", str(SAMPLES_DIR / "jetson-gpu-load.txt")]


def test_jetson_falls_back_to_load_file():
    (gpu,) = JetsonWithoutTegrastats(NODE).collect()

    assert gpu.util_percent == pytest.approx(12.3)


class RecordedRknpu(RknpuCollector):
    load_paths = ["/nonexistent/load", str(SAMPLES_DIR / "rknpu-load-rk3588.txt")]


def test_rknpu_reads_first_readable_file():
    cores = RecordedRknpu(NODE).collect()

    assert [core.util_percent for core in cores] == [12.0, 0.0, 0.0]


class MissingRknpu(RknpuCollector):
    load_paths = ["/nonexistent/rknpu/load"]


def test_missing_rknpu_file_logs_once(caplog):
    collector = MissingRknpu(NODE)

    with caplog.at_level(logging.WARNING, logger="node_agent.collectors"):
        results = [collector.collect(), collector.collect()]

    assert results == [[], []]
    assert len(caplog.records) == 1
    assert "/nonexistent/rknpu/load is readable" in caplog.records[0].getMessage()
