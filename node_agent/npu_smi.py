"""Parse the device table of Huawei Ascend `npu-smi info`.

The table gives each chip two rows between `+===` separators. The first
contains NPU id, name, health, power and temperature. The second contains
chip id (and on some cards the logical device id), bus id, AICore use and memory
use as "used / total" in MB. Cards with HBM (Atlas 800, 910) add an
HBM-Usage(MB) column after Memory-Usage(MB). The HBM is the memory jobs use
there, so it wins when its total is known. The process table that follows
the device table is ignored.
"""

import re

from schemas.messages import Accelerator

COMMAND = ["npu-smi", "info"]
HEALTH_STATES = {"OK", "Warning", "Alarm", "Critical", "UNKNOWN"}
MIB = 1024 * 1024

_USAGE = re.compile(r"(\d+)\s*/\s*(\d+)")


def parse_npu_smi(text: str) -> list[Accelerator]:
    """Return one Accelerator per chip, or [] when the text has no device table."""
    chips = []
    npu_row: list[str] | None = None
    for line in text.splitlines():
        if "Process id" in line or "Process name" in line:
            break
        cells = _cells(line)
        if len(cells) != 3:
            continue
        if cells[1] in HEALTH_STATES:
            npu_row = cells
        elif npu_row is not None:
            chip = _parse_chip(npu_row, cells)
            if chip is not None:
                chips.append(chip)
            npu_row = None

    return chips


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("|") or not line.endswith("|"):
        return []

    return [cell.strip() for cell in line[1:-1].split("|")]


def _parse_chip(npu_row: list[str], chip_row: list[str]) -> Accelerator | None:
    npu_fields = npu_row[0].split(maxsplit=1)
    chip_fields = chip_row[0].split()
    usage = chip_row[2].split(maxsplit=1)
    if not npu_fields or not npu_fields[0].isdigit() or not chip_fields:
        return None
    # The logical device id, when the card prints one, is unique on the host.
    index = chip_fields[1] if len(chip_fields) > 1 else npu_fields[0]
    if not index.isdigit():
        return None
    used_mb, total_mb = _memory_mb(usage[1] if len(usage) > 1 else "")

    return Accelerator(
        kind="npu",
        index=int(index),
        name=npu_fields[1] if len(npu_fields) > 1 else "",
        util_percent=_percent(usage[0] if usage else ""),
        mem_used_bytes=None if used_mb is None else used_mb * MIB,
        mem_total_bytes=None if total_mb is None else total_mb * MIB,
    )


def _memory_mb(text: str) -> tuple[int | None, int | None]:
    """Return used and total MB: the HBM pair when known, else the memory pair."""
    pairs = [(int(used), int(total)) for used, total in _USAGE.findall(text)]
    known = [pair for pair in pairs if pair[1] > 0]
    if not known:
        return None, None

    return known[-1]


def _percent(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
