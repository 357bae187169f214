"""cgroup v1 and v2 limit parsers, and reading them from a cgroup tree."""

from pathlib import Path

import pytest

from node_agent.cgroups import (
    CgroupLimits,
    parse_cfs_quota,
    parse_cpu_max,
    parse_memory_limit_in_bytes,
    parse_memory_max,
    parse_proc_cgroup,
    read_cgroup_limits,
)
from tests.node_agent.telemetry_samples import SAMPLES_DIR, sample

GIB = 1024**3
SERVICE = "system.slice/node-agent.service"


@pytest.mark.parametrize(
    ("text", "cores"),
    [
        ("max 100000\n", None),
        ("150000 100000\n", 1.5),
        ("50000 100000", 0.5),
        ("", None),
        ("max", None),
        ("abc 100000", None),
        ("100000 0", None),
    ],
)
def test_cpu_max_values(text, cores):
    assert parse_cpu_max(text) == cores


@pytest.mark.parametrize(
    ("quota", "period", "cores"),
    [
        ("-1\n", "100000\n", None),
        ("200000\n", "100000\n", 2.0),
        ("", "100000", None),
        ("25000", "junk", None),
    ],
)
def test_cfs_quota_values(quota, period, cores):
    assert parse_cfs_quota(quota, period) == cores


@pytest.mark.parametrize(
    ("text", "limit"),
    [("max\n", None), ("1073741824\n", GIB), ("", None), ("0", None)],
)
def test_memory_max_values(text, limit):
    assert parse_memory_max(text) == limit


@pytest.mark.parametrize(
    ("text", "limit"),
    [("9223372036854771712\n", None), ("536870912\n", GIB // 2), ("x", None)],
)
def test_memory_limit_in_bytes_values(text, limit):
    assert parse_memory_limit_in_bytes(text) == limit


def test_proc_cgroup_v1_controllers():
    paths = parse_proc_cgroup(sample("proc-cgroup-v1.txt"))

    assert paths["cpu"] == f"/{SERVICE}"
    assert paths["cpuacct"] == f"/{SERVICE}"
    assert paths["memory"] == f"/{SERVICE}"
    assert paths["cpuset"] == "/"
    assert paths[""] == f"/{SERVICE}"


def test_proc_cgroup_skips_malformed_lines():
    assert parse_proc_cgroup("nonsense\n\n0::/a\n") == {"": "/a"}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_tree_takes_smallest_limit(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "system.slice" / "cpu.max", "100000 100000\n")
    write(root / "system.slice" / "memory.max", "max\n")
    write(root / SERVICE / "cpu.max", "250000 100000\n")
    write(root / SERVICE / "memory.max", f"{2 * GIB}\n")

    limits = read_cgroup_limits(root, SAMPLES_DIR / "proc-cgroup-v2.txt")

    assert limits == CgroupLimits(cpu_cores=1.0, mem_bytes=2 * GIB)


def test_v2_tree_without_limits(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / SERVICE / "cpu.max", "max 100000\n")
    write(root / SERVICE / "memory.max", "max\n")

    limits = read_cgroup_limits(root, SAMPLES_DIR / "proc-cgroup-v2.txt")

    assert limits == CgroupLimits()


def test_v1_tree_with_joint_cpu_mount(tmp_path):
    root = tmp_path / "cgroup"
    cpu = root / "cpu,cpuacct" / SERVICE
    write(cpu / "cpu.cfs_quota_us", "150000\n")
    write(cpu / "cpu.cfs_period_us", "100000\n")
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    write(root / "memory" / SERVICE / "memory.limit_in_bytes", f"{GIB}\n")

    limits = read_cgroup_limits(root, SAMPLES_DIR / "proc-cgroup-v1.txt")

    assert limits == CgroupLimits(cpu_cores=1.5, mem_bytes=GIB)


def test_container_path_falls_back_to_mount(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "cpu.max", "200000 100000\n")
    write(root / "memory.max", f"{GIB}\n")

    limits = read_cgroup_limits(root, SAMPLES_DIR / "proc-cgroup-v2.txt")

    assert limits == CgroupLimits(cpu_cores=2.0, mem_bytes=GIB)


def test_missing_proc_file_gives_no_limits(tmp_path):
    limits = read_cgroup_limits(tmp_path, tmp_path / "missing")

    assert limits == CgroupLimits()
