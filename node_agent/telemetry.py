"""Resource use of the node: CPU, memory, disk and load, and what it offers to jobs.

psutil reads CPU, memory and disk use. The load average comes from
/proc/loadavg and the allocatable CPU and memory from the agent's cgroup
limits (see node_agent.cgroups), through parsers that are pure functions.
"""

from pathlib import Path
from typing import NamedTuple

import psutil

from node_agent.cgroups import CgroupLimits, read_cgroup_limits

DEFAULT_DISK_PATH = "/"
PROC_LOADAVG = Path("/proc/loadavg")


class Telemetry(NamedTuple):
    cpu_percent: float
    cpu_count: int
    mem_used_bytes: int
    mem_total_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int
    load_avg: list[float]
    cpu_allocatable: float
    mem_allocatable_bytes: int


def parse_loadavg(text: str) -> list[float]:
    """Return the 1, 5 and 15 minute load averages of /proc/loadavg, or [] for invalid text."""
    fields = text.split()[:3]
    try:
        values = [float(field) for field in fields]
    except ValueError:
        return []

    return values if len(values) == 3 else []


def allocatable(
    limits: CgroupLimits, cpu_count: int, mem_total_bytes: int
) -> tuple[float, int]:
    """Return the cores and memory bytes the node offers: cgroup limits or hardware."""
    cpu = float(cpu_count)
    if limits.cpu_cores is not None:
        cpu = min(cpu, limits.cpu_cores) if cpu else limits.cpu_cores
    mem = mem_total_bytes
    if limits.mem_bytes is not None:
        mem = min(mem, limits.mem_bytes) if mem else limits.mem_bytes

    return cpu, mem


class TelemetrySampler:
    """Read the node's resource use, blocking only on small file reads.

    The CPU percentage is the average since the previous sample, so the
    first sample after construction covers the time since construction.
    """

    def __init__(
        self,
        disk_path: str = DEFAULT_DISK_PATH,
        loadavg_path: Path = PROC_LOADAVG,
        read_limits=read_cgroup_limits,
    ) -> None:
        self.disk_path = disk_path
        self.loadavg_path = loadavg_path
        self._read_limits = read_limits
        psutil.cpu_percent(interval=None)

    def sample(self) -> Telemetry:
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self.disk_path)
        cpu_count = psutil.cpu_count() or 0
        cpu_allocatable, mem_allocatable_bytes = allocatable(
            self._read_limits(), cpu_count, memory.total
        )

        return Telemetry(
            cpu_percent=psutil.cpu_percent(interval=None),
            cpu_count=cpu_count,
            mem_used_bytes=memory.total - memory.available,
            mem_total_bytes=memory.total,
            disk_used_bytes=disk.used,
            disk_total_bytes=disk.total,
            load_avg=self._read_loadavg(),
            cpu_allocatable=cpu_allocatable,
            mem_allocatable_bytes=mem_allocatable_bytes,
        )

    def _read_loadavg(self) -> list[float]:
        try:
            return parse_loadavg(self.loadavg_path.read_text())
        except OSError:
            return []
