"""Load average parser, allocatable resources and the generic telemetry sampler."""

import pytest

from node_agent.cgroups import CgroupLimits
from node_agent.telemetry import TelemetrySampler, allocatable, parse_loadavg
from tests.node_agent.telemetry_samples import SAMPLES_DIR, sample

GIB = 1024**3


def test_loadavg_sample():
    assert parse_loadavg(sample("proc-loadavg.txt")) == [0.52, 0.38, 0.31]


@pytest.mark.parametrize("text", ["", "0.1 0.2", "a b c d e", "\n"])
def test_malformed_loadavg_is_empty(text):
    assert parse_loadavg(text) == []


def test_allocatable_without_limits():
    assert allocatable(CgroupLimits(), 8, 16 * GIB) == (8.0, 16 * GIB)


def test_allocatable_takes_cgroup_limits():
    limits = CgroupLimits(cpu_cores=1.5, mem_bytes=2 * GIB)

    assert allocatable(limits, 8, 16 * GIB) == (1.5, 2 * GIB)


def test_allocatable_capped_by_hardware():
    limits = CgroupLimits(cpu_cores=64.0, mem_bytes=1024 * GIB)

    assert allocatable(limits, 8, 16 * GIB) == (8.0, 16 * GIB)


def test_sampler_reports_limits_and_load():
    sampler = TelemetrySampler(
        loadavg_path=SAMPLES_DIR / "proc-loadavg.txt",
        read_limits=lambda: CgroupLimits(cpu_cores=0.5, mem_bytes=GIB // 4),
    )

    telemetry = sampler.sample()

    assert telemetry.load_avg == [0.52, 0.38, 0.31]
    assert telemetry.cpu_allocatable == 0.5
    assert telemetry.mem_allocatable_bytes == GIB // 4
    assert telemetry.cpu_count > 0


def test_sampler_without_loadavg_file(tmp_path):
    sampler = TelemetrySampler(loadavg_path=tmp_path / "missing")

    telemetry = sampler.sample()

    assert telemetry.load_avg == []
    assert telemetry.cpu_allocatable > 0
    assert telemetry.mem_allocatable_bytes > 0
