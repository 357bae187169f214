"""Run the project's console scripts as child processes in tests.

Each process writes stdout and stderr to one log file, so a test can wait for
a line of output and a failure can show what the process printed last.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

WAIT_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 30


def script_path(name: str) -> Path:
    """Return the path of console script `name` in the venv running the tests.

    Fails the test when the script is missing, which means the project is not
    installed into this venv.
    """
    path = Path(sys.executable).parent / name
    if not path.is_file():
        pytest.fail(
            f"console script {name!r} not found in {path.parent}: install the "
            f"project into this venv with scripts/setup (pip install -e '.[test]')"
        )
    return path


class SpawnedProcess:
    """A running console script whose combined output goes to `log_path`."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path):
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def output(self) -> str:
        """Return everything the process has written so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last `lines` lines of output."""
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_output(
        self, pattern: str, timeout_s: float = WAIT_TIMEOUT_S
    ) -> re.Match[str]:
        """Block until `pattern` (a regex) matches the output, and return the match.

        Fails the test with the output tail when the process exits first or
        the pattern does not appear within `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            match = self._search_or_fail(pattern, deadline, timeout_s)
            if match is not None:
                return match
            time.sleep(POLL_INTERVAL_S)

    async def wait_for_output_async(
        self, pattern: str, timeout_s: float = WAIT_TIMEOUT_S
    ) -> re.Match[str]:
        """Do what wait_for_output does without blocking the event loop."""
        deadline = time.monotonic() + timeout_s
        while True:
            match = self._search_or_fail(pattern, deadline, timeout_s)
            if match is not None:
                return match
            await asyncio.sleep(POLL_INTERVAL_S)

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the process by its pid, if it still runs."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Wait for the process to exit and return its exit code.

        Fails the test with the output tail when it still runs after `timeout_s`.
        """
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{self.name} (pid {self.pid}) still runs after {timeout_s} s. "
                f"Output tail from {self.log_path}:\n{self.tail()}"
            )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Stop the process: SIGTERM, then SIGKILL after `timeout_s`.

        Returns the exit code, which is negative when a signal ended it.
        """
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s pid %d still runs %.1f s after SIGTERM, sending SIGKILL",
                    self.name,
                    self.pid,
                    timeout_s,
                )
                self.popen.kill()
                self.popen.wait()

        return self.popen.returncode

    def _search_or_fail(
        self, pattern: str, deadline: float, timeout_s: float
    ) -> re.Match[str] | None:
        # Read the exit code before the output, so output written just before
        # the exit is still searched.
        code = self.popen.poll()
        match = re.search(pattern, self.output(), re.MULTILINE)
        if match is not None:
            return match

        if code is not None:
            pytest.fail(
                f"{self.name} (pid {self.pid}) exited with code {code} before its "
                f"output matched {pattern!r}. Output tail from {self.log_path}:\n"
                f"{self.tail()}"
            )
        if time.monotonic() >= deadline:
            pytest.fail(
                f"{self.name} (pid {self.pid}) output did not match {pattern!r} "
                f"within {timeout_s} s. Output tail from {self.log_path}:\n"
                f"{self.tail()}"
            )
        return None


class ProcessSpawner:
    """Start console scripts and stop all of them at teardown.

    Call it like a function: `spawn("broker", "--port", "0", wait_for="nats://")`.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[SpawnedProcess] = []
        self._counter = itertools.count(1)

    def __call__(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        wait_for: str | None = None,
        timeout_s: float = WAIT_TIMEOUT_S,
    ) -> SpawnedProcess:
        """Start console script `name` with `args`.

        `env` entries are added to this process's environment. With
        `wait_for`, block until that regex matches the output.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}-{next(self._counter)}.log"
        command = [str(script_path(name)), *args]
        child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}

        with log_path.open("wb") as log_file:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=child_env,
            )
        process = SpawnedProcess(name, popen, log_path)
        self.processes.append(process)
        logger.info("started %s as pid %d, output in %s", command, popen.pid, log_path)

        if wait_for is not None:
            process.wait_for_output(wait_for, timeout_s)
        return process

    def stop_all(self) -> None:
        """Stop every started process, the most recent first."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
