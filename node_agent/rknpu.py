"""Parse the NPU load file of the Rockchip RK3588 driver (rknpu)."""

import re

from schemas.messages import Accelerator

# NOTE: the debugfs file needs debugfs mounted and root. Some kernels expose
# the same text under /proc/rknpu/load instead.
LOAD_PATHS = ("/sys/kernel/debug/rknpu/load", "/proc/rknpu/load")
NPU_NAME = "RK3588 NPU"

_CORE = re.compile(r"Core(\d+):\s*(\d+)%")
_SINGLE = re.compile(r"NPU load:\s*(\d+)%")


def parse_rknpu_load(text: str) -> list[Accelerator]:
    """Return one Accelerator per NPU core.

    The multi-core driver writes `NPU load:  Core0: 12%, Core1:  0%, ...`, and a
    single-core driver writes `NPU load: 12%`, which becomes core 0.
    """
    cores = _CORE.findall(text)
    if not cores:
        single = _SINGLE.search(text)
        cores = [("0", single.group(1))] if single else []

    return [
        Accelerator(
            kind="npu",
            index=int(core),
            name=f"{NPU_NAME} core {core}",
            util_percent=float(percent),
        )
        for core, percent in cores
    ]
