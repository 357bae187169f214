"""Bandwidth traces: rates that change over time, replayed in a loop.

Two file formats are read, told apart by a comma in the first data line:
- Mahimahi link traces, the format of public cellular traces: one integer
  per line, a time in milliseconds, never decreasing. Each line is one
  opportunity for a 1500-byte packet, so the rate over a window is
  1500 * 8 * lines / window. The trace repeats with the period of its last
  time.
- CSV with `seconds,rate` rows: from that second on, the link runs at that
  rate (bits per second, or a rate with a unit as
  `schemas.values.parse_rate` reads it).
  A rate of 0 is an outage. A first row of column names is skipped.
Lines that start with `#` are comments in both.
"""

import bisect
import csv
import math
from dataclasses import dataclass
from pathlib import Path

from schemas.values import parse_rate

MAHIMAHI_PACKET_BYTES = 1500


@dataclass(frozen=True)
class RateTrace:
    """Rates in bits per second, each from its start time until the next."""

    starts_s: tuple[float, ...]
    rates_bps: tuple[float, ...]
    length_s: float

    def rate_at(self, elapsed_s: float) -> float:
        """Return the rate at `elapsed_s` since the start, looping the trace."""
        offset_s = elapsed_s % self.length_s
        index = bisect.bisect_right(self.starts_s, offset_s) - 1
        return self.rates_bps[max(index, 0)]


def load_trace(path: str | Path, bin_s: float = 1.0) -> RateTrace:
    """Load a Mahimahi trace or a `seconds,rate` CSV, chosen by the content."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file: {exc}") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    data = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not data:
        raise ValueError(f"{path}: the trace is empty")
    if "," in data[0][1]:
        return _load_csv(data, path)
    return _load_mahimahi(data, path, bin_s)


def _load_mahimahi(data: list[tuple[int, str]], path: Path, bin_s: float) -> RateTrace:
    times_ms: list[int] = []
    for number, line in data:
        if not line.isdigit():
            raise ValueError(
                f"{path}:{number}: expected a time in milliseconds, got {line!r}"
            )
        if times_ms and int(line) < times_ms[-1]:
            raise ValueError(
                f"{path}:{number}: times must not decrease, got {line} after "
                f"{times_ms[-1]}"
            )
        times_ms.append(int(line))

    # The trace repeats with the period of its last time, so a packet at
    # exactly that time is one at time 0 of the next round.
    length_ms = max(times_ms[-1], 1)
    bin_ms = bin_s * 1000
    bins = max(1, math.ceil(length_ms / bin_ms))
    counts = [0] * bins
    for time_ms in times_ms:
        counts[min(int(time_ms % length_ms // bin_ms), bins - 1)] += 1
    bits_per_packet = MAHIMAHI_PACKET_BYTES * 8
    rates = tuple(count * bits_per_packet / bin_s for count in counts)

    return RateTrace(tuple(i * bin_s for i in range(bins)), rates, length_ms / 1000)


def _load_csv(data: list[tuple[int, str]], path: Path) -> RateTrace:
    starts: list[float] = []
    rates: list[float] = []
    for index, (number, line) in enumerate(data):
        row = next(csv.reader([line]))
        if index == 0 and not _is_number(row[0]):
            continue  # column names
        if len(row) != 2:
            raise ValueError(
                f"{path}:{number}: expected seconds,rate, got {len(row)} columns"
            )
        try:
            start_s = float(row[0])
            rate_bps = parse_rate(row[1], zero=True)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: expected seconds,rate: {exc}") from None
        if starts and start_s <= starts[-1]:
            raise ValueError(f"{path}:{number}: times must increase, got {start_s}")
        starts.append(start_s)
        rates.append(rate_bps)
    if not starts or starts[0] != 0:
        raise ValueError(f"{path}: the first row must start at second 0")
    if not any(rates):
        raise ValueError(f"{path}: every rate is 0, so nothing would pass")
    # The last rate lasts as long as the step before it, at least 1 s.
    last_step_s = starts[-1] - starts[-2] if len(starts) > 1 else 1.0

    return RateTrace(tuple(starts), tuple(rates), starts[-1] + last_step_s)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
