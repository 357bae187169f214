"""Resource use of the node: CPU, memory and disk, read through psutil."""

from typing import NamedTuple

import psutil

DEFAULT_DISK_PATH = "/"


class Telemetry(NamedTuple):
    cpu_percent: float
    cpu_count: int
    mem_used_bytes: int
    mem_total_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int


class TelemetrySampler:
    """Read the node's resource use without blocking.

    The CPU percentage is the average since the previous sample, so the
    first sample after construction covers the time since construction.
    """

    def __init__(self, disk_path: str = DEFAULT_DISK_PATH) -> None:
        self.disk_path = disk_path
        psutil.cpu_percent(interval=None)

    def sample(self) -> Telemetry:
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self.disk_path)

        return Telemetry(
            cpu_percent=psutil.cpu_percent(interval=None),
            cpu_count=psutil.cpu_count() or 0,
            mem_used_bytes=memory.total - memory.available,
            mem_total_bytes=memory.total,
            disk_used_bytes=disk.used,
            disk_total_bytes=disk.total,
        )
