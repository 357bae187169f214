"""Replies cut or replaced to fit the NATS max payload."""

import pytest

from node_agent.replies import encode_to_fit
from schemas.messages import ContainerInfo, Reply, encode, reply_decoder

MAX_PAYLOAD_BYTES = 4096
NODE = "node-a"


def logs_reply(logs: str) -> Reply:
    return Reply(id="cmd-1", node=NODE, ok=True, logs=logs)


def test_small_reply_unchanged():
    reply = logs_reply("one line\n")

    data = encode_to_fit(reply, MAX_PAYLOAD_BYTES)

    assert data == encode(reply)


@pytest.mark.parametrize("line", ["plain text", 'quotes " and \\ \t tabs', "ünïcödé €"])
def test_long_logs_keep_end(line: str):
    lines = [f"{index:05d} {line}\n" for index in range(2000)]
    reply = logs_reply("".join(lines))

    data = encode_to_fit(reply, MAX_PAYLOAD_BYTES)
    logs = reply_decoder.decode(data).logs
    notice, _, kept_logs = logs.partition("\n")
    kept_log_lines = kept_logs.splitlines(keepends=True)
    cut_bytes = len("".join(lines[: len(lines) - len(kept_log_lines)]).encode())

    assert len(data) <= MAX_PAYLOAD_BYTES
    assert reply_decoder.decode(data).ok
    assert kept_log_lines == lines[-len(kept_log_lines) :]
    assert len(kept_log_lines) > 10
    assert f"the first {cut_bytes} bytes of this log were cut" in notice
    assert "`docker logs` on node node-a shows the whole log" in notice


def test_logs_without_newlines_keep_end():
    reply = logs_reply("x" * 10_000 + "END")

    data = encode_to_fit(reply, MAX_PAYLOAD_BYTES)
    logs = reply_decoder.decode(data).logs

    assert len(data) <= MAX_PAYLOAD_BYTES
    assert logs.endswith("xEND")


def test_oversized_reply_becomes_error():
    container = ContainerInfo(
        id="c" * 64, name="job", job="job", node=NODE, image="busybox", state="running"
    )
    reply = Reply(id="cmd-1", node=NODE, ok=True, containers=[container] * 100)

    data = encode_to_fit(reply, MAX_PAYLOAD_BYTES)
    decoded = reply_decoder.decode(data)

    assert len(data) <= MAX_PAYLOAD_BYTES
    assert not decoded.ok
    assert decoded.error.code == "internal"
    assert f"over the NATS max payload of {MAX_PAYLOAD_BYTES} bytes" in (
        decoded.error.message
    )
