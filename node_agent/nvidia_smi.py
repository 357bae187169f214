"""Parse the GPU table of `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`."""

import csv
import io

from schemas.messages import Accelerator

QUERY_FIELDS = "index,name,utilization.gpu,memory.used,memory.total"
COMMAND = [
    "nvidia-smi",
    f"--query-gpu={QUERY_FIELDS}",
    "--format=csv,noheader,nounits",
]
MIB = 1024 * 1024


def parse_nvidia_smi(text: str) -> list[Accelerator]:
    """Return one Accelerator per row, with memory columns in MiB.

    A value such as "[N/A]" or "[Not Supported]" becomes None, and a row
    without five columns or without an integer index is skipped.
    """
    gpus = []
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        if len(row) != 5:
            continue
        index = _number(row[0], int)
        if index is None:
            continue
        used_mib = _number(row[3], int)
        total_mib = _number(row[4], int)
        gpus.append(
            Accelerator(
                kind="gpu",
                index=index,
                name=row[1].strip(),
                util_percent=_number(row[2], float),
                mem_used_bytes=None if used_mib is None else used_mib * MIB,
                mem_total_bytes=None if total_mib is None else total_mib * MIB,
            )
        )

    return gpus


def _number(text: str, kind):
    try:
        return kind(text.strip())
    except ValueError:
        return None
