"""Recorded outputs of /proc, cgroup files and vendor tools, in tests/data/telemetry."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).parents[1] / "data" / "telemetry"


def sample(name: str) -> str:
    return (SAMPLES_DIR / name).read_text()
