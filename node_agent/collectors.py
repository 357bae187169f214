"""Accelerator collectors: which vendor tool a node's device type reads, and how.

Each collector runs one tool or reads one file and hands its text to a pure
parser. A tool or file that is missing, fails, times out or prints nothing
usable gives an empty list, and the collector logs that once for the life of
the agent, so heartbeats go on without a warning each. Tools run with a
short timeout and block the calling thread, so callers run `collect()` in a
worker thread.
"""

import logging
import os
import platform
import select
import shutil
import subprocess
from collections.abc import Callable, Sequence

from node_agent import npu_smi, nvidia_smi, rknpu, tegrastats
from schemas.messages import Accelerator

logger = logging.getLogger(__name__)

TOOL_TIMEOUT_S = 2.0
AUTO_DEVICE_TYPE = "auto"
JETSON_RELEASE_FILE = "/etc/nv_tegra_release"
RKNPU_FOLDERS = ("/sys/kernel/debug/rknpu", "/proc/rknpu")


class SourceUnavailable(Exception):
    """The tool or file of a collector could not be read, for the reason in the message."""


def run_tool(argv: Sequence[str], timeout_s: float) -> str:
    """Run a tool to completion and return its standard output."""
    if shutil.which(argv[0]) is None:
        raise SourceUnavailable(f"{argv[0]} not found on PATH")
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(
            f"{' '.join(argv)} timed out after {timeout_s:g} s"
        ) from None
    except OSError as exc:
        raise SourceUnavailable(f"{' '.join(argv)} failed to start: {exc}") from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[:1] or ["no error output"]
        raise SourceUnavailable(
            f"{' '.join(argv)} exited with {done.returncode}: {reason[0]}"
        )

    return done.stdout


def read_first_line(argv: Sequence[str], timeout_s: float) -> str:
    """Start a tool that prints a line per interval, return its first line, stop it."""
    if shutil.which(argv[0]) is None:
        raise SourceUnavailable(f"{argv[0]} not found on PATH")
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
    except OSError as exc:
        raise SourceUnavailable(f"{' '.join(argv)} failed to start: {exc}") from None
    try:
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        if not ready:
            raise SourceUnavailable(
                f"{' '.join(argv)} printed no line within {timeout_s:g} s"
            )
        return process.stdout.readline()
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def read_first_file(paths: Sequence[str]) -> str:
    """Return the text of the first readable file of `paths`."""
    for path in paths:
        try:
            with open(path) as file:
                return file.read()
        except OSError:
            continue

    raise SourceUnavailable(f"none of {', '.join(paths)} is readable")


class AcceleratorCollector:
    """Read a node's accelerators, or [] and one log line when the source fails.

    Subclasses implement `read()`, which returns the parsed accelerators or
    raises SourceUnavailable.
    """

    source = ""

    def __init__(self, node: str, timeout_s: float = TOOL_TIMEOUT_S) -> None:
        self.node = node
        self.timeout_s = timeout_s
        self._reported = False

    def collect(self) -> list[Accelerator]:
        try:
            accelerators = self.read()
        except SourceUnavailable as exc:
            self._report(str(exc))
            return []
        if not accelerators:
            self._report(f"{self.source} reported no accelerator")

        return accelerators

    def read(self) -> list[Accelerator]:
        raise NotImplementedError

    def _report(self, reason: str) -> None:
        if self._reported:
            return
        self._reported = True
        logger.warning(
            "node %s sends no accelerator use while %s fails: %s",
            self.node,
            self.source,
            reason,
        )


class NvidiaCollector(AcceleratorCollector):
    source = "nvidia-smi"
    command: Sequence[str] = nvidia_smi.COMMAND

    def read(self) -> list[Accelerator]:
        return nvidia_smi.parse_nvidia_smi(run_tool(self.command, self.timeout_s))


class AtlasCollector(AcceleratorCollector):
    source = "npu-smi"
    command: Sequence[str] = npu_smi.COMMAND

    def read(self) -> list[Accelerator]:
        return npu_smi.parse_npu_smi(run_tool(self.command, self.timeout_s))


class JetsonCollector(AcceleratorCollector):
    """Read one tegrastats line, or the GPU load file when tegrastats is missing."""

    source = "tegrastats"
    command: Sequence[str] = tegrastats.COMMAND
    load_paths: Sequence[str] = tegrastats.GPU_LOAD_PATHS

    def read(self) -> list[Accelerator]:
        if shutil.which(self.command[0]) is None:
            text = read_first_file(self.load_paths)
            return tegrastats.parse_gpu_load(text)
        line = read_first_line(self.command, self.timeout_s)

        return tegrastats.parse_tegrastats(line)


class RknpuCollector(AcceleratorCollector):
    source = "the rknpu load file"
    load_paths: Sequence[str] = rknpu.LOAD_PATHS

    def read(self) -> list[Accelerator]:
        return rknpu.parse_rknpu_load(read_first_file(self.load_paths))


def collector_class(device_type: str) -> type[AcceleratorCollector] | None:
    """Return the collector a device type reads, or None for CPU-only boards."""
    kind = device_type.upper()
    if kind.startswith("ATLAS"):
        return AtlasCollector
    if kind.startswith("RK3588"):
        return RknpuCollector
    if kind.startswith("JETSON"):
        return JetsonCollector
    if kind.startswith(("NVIDIA", "GPU")):
        return NvidiaCollector

    return None


def select_collectors(device_type: str, node: str) -> list[AcceleratorCollector]:
    """Return the accelerator collectors of a device type, or [] for CPU-only boards."""
    chosen = collector_class(device_type)

    return [] if chosen is None else [chosen(node)]


def detect_device_type(
    which: Callable[[str], str | None] = shutil.which,
    exists: Callable[[str], bool] = os.path.exists,
    machine: str | None = None,
) -> str:
    """Guess the device type from the tools and files this board has.

    Jetson comes before plain NVIDIA because JetPack 6 also ships nvidia-smi.
    A board with none of them is "x86" on x86 machines and its machine name
    (e.g. "aarch64") otherwise.
    """
    if which("npu-smi"):
        return "ATLAS"
    if any(exists(folder) for folder in RKNPU_FOLDERS):
        return "RK3588"
    if which("tegrastats") or exists(JETSON_RELEASE_FILE):
        return "JETSON"
    if which("nvidia-smi"):
        return "NVIDIA_GPU"
    machine = platform.machine() if machine is None else machine
    if machine.lower() in ("x86_64", "amd64", "i386", "i686"):
        return "x86"

    return machine.lower() or "x86"
