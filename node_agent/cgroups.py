"""CPU and memory limits of the agent's cgroup, under cgroup v2 or v1.

The parsers are pure functions over the text of one file each, and only
`read_cgroup_limits` touches the file system. A limit set on any ancestor
cgroup also binds the agent, so the reader takes the smallest limit on the
path from the agent's cgroup up to the root.
"""

from pathlib import Path
from typing import NamedTuple

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit value
# (9223372036854771712 on 4 KiB pages), so anything this large is no limit.
V1_UNLIMITED_BYTES = 1 << 62


class CgroupLimits(NamedTuple):
    """The agent's cgroup limits, None where no limit is set or readable."""

    cpu_cores: float | None = None
    mem_bytes: int | None = None


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each controller of /proc/<pid>/cgroup to the cgroup's path.

    The cgroup v2 entry (`0::/path`) has the controller name "".
    """
    paths = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path

    return paths


def parse_cpu_max(text: str) -> float | None:
    """Return the cores a cgroup v2 `cpu.max` ("QUOTA PERIOD") allows."""
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None

    return _cores(fields[0], fields[1])


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """Return the cores cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` allow."""
    return _cores(quota_text.strip(), period_text.strip())


def parse_memory_max(text: str) -> int | None:
    """Return the bytes of a cgroup v2 `memory.max`, or None for "max"."""
    value = _parse_int(text.strip())
    if value is None or value <= 0:
        return None

    return value


def parse_memory_limit_in_bytes(text: str) -> int | None:
    """Return the bytes of a cgroup v1 `memory.limit_in_bytes`, or None for no limit."""
    value = parse_memory_max(text)
    if value is None or value >= V1_UNLIMITED_BYTES:
        return None

    return value


def read_cgroup_limits(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> CgroupLimits:
    """Read the CPU and memory limits of this process's cgroup."""
    text = _read(proc_cgroup)
    if text is None:
        return CgroupLimits()
    paths = parse_proc_cgroup(text)
    if (root / "cgroup.controllers").exists():
        return _read_v2(root, paths.get("", "/"))

    return _read_v1(root, paths)


def _read_v2(root: Path, path: str) -> CgroupLimits:
    cpu_limits, mem_limits = [], []
    for directory in _ancestors(root, path):
        cpu_limits.append(_parse_file(directory / "cpu.max", parse_cpu_max))
        mem_limits.append(_parse_file(directory / "memory.max", parse_memory_max))

    return CgroupLimits(_smallest(cpu_limits), _smallest(mem_limits))


def _read_v1(root: Path, paths: dict[str, str]) -> CgroupLimits:
    cpu_limits = []
    for directory in _ancestors(_v1_mount(root, "cpu"), paths.get("cpu", "/")):
        quota = _read(directory / "cpu.cfs_quota_us")
        period = _read(directory / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            cpu_limits.append(parse_cfs_quota(quota, period))
    mem_limits = [
        _parse_file(directory / "memory.limit_in_bytes", parse_memory_limit_in_bytes)
        for directory in _ancestors(_v1_mount(root, "memory"), paths.get("memory", "/"))
    ]

    return CgroupLimits(_smallest(cpu_limits), _smallest(mem_limits))


def _v1_mount(root: Path, controller: str) -> Path:
    """Return where a v1 controller is mounted: its own folder or a joint one."""
    if (root / controller).is_dir():
        return root / controller
    for candidate in root.glob(f"*{controller}*"):
        if controller in candidate.name.split(","):
            return candidate

    return root / controller


def _ancestors(mount: Path, path: str) -> list[Path]:
    """Return the existing cgroup folders from `path` up to the mount point.

    Inside a container the path names the host's hierarchy, which is not
    mounted, so the walk then covers the mount point alone.
    """
    parts = [part for part in path.split("/") if part]
    folders = [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]

    return [folder for folder in folders if folder.is_dir()]


def _cores(quota: str, period: str) -> float | None:
    quota_us, period_us = _parse_int(quota), _parse_int(period)
    if quota_us is None or period_us is None or quota_us <= 0 or period_us <= 0:
        return None

    return quota_us / period_us


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _parse_file(path: Path, parse):
    text = _read(path)
    return None if text is None else parse(text)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _smallest(values):
    known = [value for value in values if value is not None]
    return min(known) if known else None
