"""Parse one line of Jetson `tegrastats` output, or the GPU load file in sysfs.

Jetson boards share their RAM between CPU and GPU, so the GPU's memory is
the board's RAM as tegrastats reports it ("RAM used/totalMB").
"""

import re

from schemas.messages import Accelerator

COMMAND = ["tegrastats", "--interval", "1000"]
# NOTE: the load file moved between L4T releases. These are the paths of
# older Jetsons (gpu.0) and of Orin (17000000.ga10b, 17000000.gpu). None was
# checked on a board here.
GPU_LOAD_PATHS = (
    "/sys/devices/gpu.0/load",
    "/sys/devices/platform/gpu.0/load",
    "/sys/devices/17000000.ga10b/load",
    "/sys/devices/platform/17000000.ga10b/load",
    "/sys/devices/platform/bus@0/17000000.gpu/load",
)
GPU_NAME = "Jetson GPU"
MIB = 1024 * 1024

_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+(?:\.\d+)?)%")


def parse_tegrastats(line: str) -> list[Accelerator]:
    """Return the GPU of one tegrastats line, or [] without GR3D_FREQ."""
    load = _GR3D.search(line)
    if load is None:
        return []
    ram = _RAM.search(line)

    return [
        Accelerator(
            kind="gpu",
            index=0,
            name=GPU_NAME,
            util_percent=float(load.group(1)),
            mem_used_bytes=int(ram.group(1)) * MIB if ram else None,
            mem_total_bytes=int(ram.group(2)) * MIB if ram else None,
        )
    ]


def parse_gpu_load(text: str) -> list[Accelerator]:
    """Return the GPU of a sysfs load file, which contains tenths of a percent."""
    try:
        permille = int(text.strip())
    except ValueError:
        return []
    if not 0 <= permille <= 1000:
        return []

    return [Accelerator(kind="gpu", index=0, name=GPU_NAME, util_percent=permille / 10)]
