"""Encode replies so that they fit into one NATS message.

nats-py 2.16 raises MaxPayloadError instead of publishing a message larger
than the server's max payload (1 MiB unless the nats-server configuration
sets `max_payload`), so a reply over that size would never reach the
controller. `encode_to_fit` cuts
the start of a long log to make it fit, and replaces any other reply that
is too large with an error reply.
"""

import logging

import msgspec

from node_agent.errors import AgentError
from schemas.messages import Reply, encode

logger = logging.getLogger(__name__)


def encode_to_fit(reply: Reply, max_payload_bytes: int) -> bytes:
    """Encode `reply` in at most `max_payload_bytes`.

    A reply with logs keeps the end of the log that fits, after one line that
    states how many bytes were cut. A reply that still does not fit becomes an
    `internal` error reply.
    """
    data = encode(reply)
    if len(data) <= max_payload_bytes:
        return data

    if reply.logs:
        fitted = encode(_cut_logs(reply, max_payload_bytes))
        if len(fitted) <= max_payload_bytes:
            return fitted

    logger.warning(
        "node %s: reply to command %s is %d bytes, over the NATS max payload "
        "of %d bytes; replying with an error",
        reply.node,
        reply.id,
        len(data),
        max_payload_bytes,
    )
    error = AgentError(
        "internal",
        f"the reply to command {reply.id!r} is {len(data)} bytes, over the NATS "
        f"max payload of {max_payload_bytes} bytes, so it cannot be sent; raise "
        "max_payload in the nats-server configuration or request less data",
    )

    return encode(Reply(id=reply.id, node=reply.node, ok=False, error=error.to_info()))


def _cut_logs(reply: Reply, max_payload_bytes: int) -> Reply:
    """Return `reply` with the longest end of its logs that fits the payload."""
    logs = reply.logs or ""
    total_bytes = len(logs.encode("utf-8"))
    # The notice is sized with the whole log's byte count, which has at least
    # as many digits as the count of bytes that are cut.
    notice_size = len(_cut_notice(reply.node, total_bytes, max_payload_bytes))
    overhead = len(encode(msgspec.structs.replace(reply, logs=""))) + notice_size
    start = _tail_start(logs, max_payload_bytes - overhead)
    cut_bytes = len(logs[:start].encode("utf-8"))
    notice = _cut_notice(reply.node, cut_bytes, max_payload_bytes)

    return msgspec.structs.replace(reply, logs=notice + logs[start:])


def _cut_notice(node: str, cut_bytes: int, max_payload_bytes: int) -> str:
    # Quotes, backslashes and control characters in the node name would grow
    # in JSON, but node names contain only letters, digits, '_' and '-'.
    return (
        f"[node-agent: the first {cut_bytes} bytes of this log were cut to fit "
        f"the NATS max payload of {max_payload_bytes} bytes; `docker logs` on "
        f"node {node} shows the whole log]\n"
    )


def _tail_start(logs: str, budget_bytes: int) -> int:
    """Return the index where the longest end of `logs` that fits begins.

    The size counted is that of the text inside a JSON string, where
    escaping can make a character longer than its UTF-8 bytes. The end starts
    at a line when it can, so that no line is cut in half.
    """
    low, high = 0, len(logs)
    while low < high:
        middle = (low + high) // 2
        if _json_size(logs[middle:]) <= budget_bytes:
            high = middle
        else:
            low = middle + 1
    line_start = logs.find("\n", low - 1) + 1 if low > 0 else 0

    return line_start if 0 < line_start < len(logs) else low


def _json_size(text: str) -> int:
    # Minus the two quotes around the string.
    return len(msgspec.json.encode(text)) - 2
