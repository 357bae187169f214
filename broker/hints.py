"""The command that starts a broker for a NATS URL, for error messages."""

from urllib.parse import urlsplit

DEFAULT_PORT = 4222


def broker_command(url: str) -> str:
    """Return the `broker` command line that listens where `url` points."""
    try:
        port = urlsplit(url).port
    except ValueError:
        port = None
    if port is None or port == DEFAULT_PORT:
        return "broker"
    return f"broker --port {port}"
