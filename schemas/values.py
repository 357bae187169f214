"""Parsers for the short value syntaxes of the job file.

Each parser takes the value as written (Compose syntax) and returns a plain
Python value, or raises ValueError with a message that quotes the value and
shows the expected form. The job spec calls them to validate; the agent
calls them again to translate a spec into Docker's terms.
"""

import re
import shlex
from typing import NamedTuple

_SIZE_RE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[bkmg]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
_RESTART_RE = re.compile(r"no|always|unless-stopped|on-failure(?::(?P<retries>\d+))?")
_VOLUME_MODES = {
    "ro",
    "rw",
    "z",
    "Z",
    "nocopy",
    "shared",
    "slave",
    "private",
    "rshared",
    "rslave",
    "rprivate",
    "cached",
    "delegated",
    "consistent",
}
_DEVICE_PERMISSIONS_RE = re.compile(r"[rwm]{1,3}")


class PortMapping(NamedTuple):
    """One published port: `[host_ip:][host_port:]container_port[/protocol]`."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int | None = None


class DeviceMapping(NamedTuple):
    host_path: str
    container_path: str
    permissions: str = "rwm"


class RestartPolicy(NamedTuple):
    name: str
    max_retries: int = 0


def parse_port(value: str | int) -> PortMapping:
    """Parse a Compose short port syntax such as "127.0.0.1:8080:80/udp"."""
    text = str(value)
    body, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp", "sctp"):
        raise ValueError(
            f"invalid protocol {protocol!r} in port {text!r}: use tcp or udp"
        )

    host_ip = ""
    if body.startswith("["):
        host_ip, sep, body = body[1:].partition("]:")
        if not sep:
            raise ValueError(f"invalid port {text!r}: expected [IPV6]:HOST_PORT:PORT")
    parts = body.split(":")
    if not host_ip and len(parts) == 3:
        host_ip = parts.pop(0)
    if len(parts) > 2 or (host_ip and len(parts) != 2):
        raise ValueError(
            f"invalid port {text!r}: expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]"
        )

    host_port = _port_number(parts[0], text) if len(parts) == 2 and parts[0] else None
    container_port = _port_number(parts[-1], text)
    return PortMapping(container_port, protocol, host_ip, host_port)


def _port_number(token: str, text: str) -> int:
    if "-" in token:
        raise ValueError(f"port ranges are not supported: {text!r}; list each port")
    if not token.isdigit() or not 0 < int(token) < 65536:
        raise ValueError(f"invalid port number {token!r} in {text!r}: use 1 to 65535")
    return int(token)


def parse_size(value: str | int) -> int:
    """Parse a byte size such as 512m, 1.5g or 1048576 into bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    match = _SIZE_RE.fullmatch(str(value).strip())
    if match is None:
        raise ValueError(
            f"invalid size {value!r}: use a number with b, k, m or g, e.g. '512m'"
        )
    return int(float(match["number"]) * _SIZE_UNITS[match["unit"].lower()])


def parse_duration(value: str | int | float) -> float:
    """Parse a Compose duration such as 1m30s, 10s or 500ms into seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    text = str(value).strip()
    parts = _DURATION_PART_RE.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(
            f"invalid duration {value!r}: use units h, m, s, ms, us, e.g. '1m30s'"
        )
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_restart(value: str) -> RestartPolicy:
    """Parse a restart policy: no, always, unless-stopped or on-failure[:N]."""
    match = _RESTART_RE.fullmatch(value)
    if match is None:
        raise ValueError(
            f'invalid restart policy {value!r}: use "no" (quoted in YAML), always, '
            "unless-stopped or on-failure[:MAX_RETRIES]"
        )
    if value.startswith("on-failure"):
        return RestartPolicy("on-failure", int(match["retries"] or 0))
    return RestartPolicy(value)


def parse_device(value: str) -> DeviceMapping:
    """Parse a device mapping HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]."""
    parts = value.split(":")
    if not 1 <= len(parts) <= 3 or not all(parts) or not parts[0].startswith("/"):
        raise ValueError(
            f"invalid device {value!r}: expected /dev/HOST[:/dev/CONTAINER[:rwm]]"
        )
    if len(parts) == 3 and not _DEVICE_PERMISSIONS_RE.fullmatch(parts[2]):
        raise ValueError(
            f"invalid device permissions {parts[2]!r} in {value!r}: use r, w, m"
        )
    host = parts[0]
    container = parts[1] if len(parts) > 1 else host
    return DeviceMapping(host, container, parts[2] if len(parts) == 3 else "rwm")


def check_volume(value: str) -> str:
    """Check a short volume syntax SOURCE:TARGET[:MODE] or TARGET."""
    parts = value.split(":")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"invalid volume {value!r}: expected SOURCE:TARGET[:MODE]")
    if not parts[min(1, len(parts) - 1)].startswith("/"):
        raise ValueError(
            f"invalid volume {value!r}: the container path must be absolute"
        )
    if len(parts) == 3:
        unknown = set(parts[2].split(",")) - _VOLUME_MODES
        if unknown:
            raise ValueError(
                f"invalid volume mode {sorted(unknown)[0]!r} in {value!r}: use ro or rw"
            )
    return value


def key_value_pairs(value: dict | list[str], what: str) -> dict[str, str]:
    """Normalise a Compose map or a list of KEY=VALUE strings into a dict."""
    if isinstance(value, dict):
        return {key: "" if item is None else str(item) for key, item in value.items()}
    pairs = {}
    for item in value:
        key, sep, item_value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid {what} entry {item!r}: expected KEY=VALUE")
        pairs[key] = item_value
    return pairs


def argv(value: str | list[str] | None) -> list[str] | None:
    """Split a command given as one string the way a POSIX shell would."""
    if value is None or isinstance(value, list):
        return value
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"invalid command {value!r}: {exc}") from None


_RATE_RE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z/]*)")
# Unit -> bits per second of one unit. Lower-case b means bits, upper-case B
# bytes; k, M and G are powers of 1000. The lower-case kbit, mbit and gbit
# are the spellings of Linux tc.
_RATE_UNITS = {
    "": 1,
    "bps": 1,
    "bit": 1,
    "kbit": 1e3,
    "kbps": 1e3,
    "Kbit": 1e3,
    "Kbps": 1e3,
    "Mbit": 1e6,
    "mbit": 1e6,
    "gbit": 1e9,
    "Mbps": 1e6,
    "Gbit": 1e9,
    "Gbps": 1e9,
    "B/s": 8,
    "kB/s": 8e3,
    "KB/s": 8e3,
    "MB/s": 8e6,
    "GB/s": 8e9,
}


def parse_rate(text: str, unit_required: bool = False, zero: bool = False) -> float:
    """Parse a rate such as 100Mbit, 20Mbps or 5MB/s into bits per second.

    A number without a unit is bits per second, unless `unit_required`.
    A rate of 0 is rejected unless `zero` allows it.
    """
    match = _RATE_RE.fullmatch(text.strip())
    if match is None or match["unit"] not in _RATE_UNITS:
        raise ValueError(
            f"invalid rate {text!r}: use a number with bit, kbit, Mbit, Gbit "
            "(or bps, kbps, Mbps, Gbps) for bits per second, or B/s, kB/s, "
            "MB/s, GB/s for bytes per second"
        )
    if unit_required and not match["unit"]:
        raise ValueError(
            f"invalid rate {text!r}: add a unit, e.g. {text.strip()}Mbit for "
            f"megabits or {text.strip()}kbit for kilobits per second"
        )
    rate_bps = float(match["number"]) * _RATE_UNITS[match["unit"]]
    if rate_bps <= 0 and not zero:
        raise ValueError(f"invalid rate {text!r}: must be greater than 0")
    return rate_bps
