import msgspec
import pytest

from schemas import messages
from schemas.job import JobSpec
from schemas.messages import (
    Accelerator,
    ContainerInfo,
    Create,
    ErrorInfo,
    Heartbeat,
    Reply,
    Start,
    Stop,
    command_decoder,
    encode,
)


def test_commands_round_trip_through_json():
    spec = JobSpec(name="web", image="dsched/busybox:local", ports=["8080:80"])
    commands = [
        Create(id="c1", deadline=1.5, spec=spec),
        Start(id="c2", deadline=2.0, job="web"),
        Stop(id="c3", deadline=3.0, job="web", timeout_s=10.0),
    ]

    decoded = [command_decoder.decode(encode(command)) for command in commands]

    assert decoded == commands


def test_command_type_tag_is_on_the_wire():
    payload = msgspec.json.decode(encode(Start(id="c1", deadline=1.0, job="web")))

    assert payload["type"] == "start"
    assert payload["v"] == messages.SCHEMA_VERSION


def test_unknown_command_type_is_rejected():
    payload = b'{"type": "explode", "id": "c1", "deadline": 1.0}'

    with pytest.raises(msgspec.ValidationError, match="Invalid value 'explode'"):
        command_decoder.decode(payload)


def test_command_with_unknown_field_is_rejected():
    payload = b'{"type": "start", "id": "c1", "deadline": 1.0, "job": "w", "x": 1}'

    with pytest.raises(msgspec.ValidationError, match="unknown field `x`"):
        command_decoder.decode(payload)


def test_command_without_deadline_is_rejected():
    payload = b'{"type": "start", "id": "c1", "job": "web"}'

    with pytest.raises(
        msgspec.ValidationError, match="missing required field `deadline`"
    ):
        command_decoder.decode(payload)


def test_first_schema_version_payloads_decode():
    heartbeat = (
        b'{"v": 1, "node": "n1", "seq": 3, "sent_at": 10.0, "interval_s": 1.0,'
        b' "device_type": "x86"}'
    )
    reply = b'{"v": 1, "id": "c1", "node": "n1", "ok": false,'
    reply += b' "error": {"code": "conflict", "message": "taken"}}'

    assert messages.heartbeat_decoder.decode(heartbeat).seq == 3
    assert messages.reply_decoder.decode(reply).error == ErrorInfo(
        code="conflict", message="taken"
    )


def test_heartbeat_without_telemetry_fields_decodes():
    payload = (
        b'{"v": 1, "node": "n1", "seq": 3, "sent_at": 10.0, "interval_s": 1.0,'
        b' "device_type": "x86", "cpu_percent": 5.0, "cpu_count": 4}'
    )

    heartbeat = messages.heartbeat_decoder.decode(payload)

    assert heartbeat.load_avg == []
    assert heartbeat.cpu_allocatable == 0.0
    assert heartbeat.mem_allocatable_bytes == 0
    assert heartbeat.accelerators == []


def test_heartbeat_accelerators_round_trip():
    accelerators = [
        Accelerator(kind="npu", index=0, name="310P3", util_percent=21.0),
        Accelerator(
            kind="gpu", index=1, mem_used_bytes=1 << 30, mem_total_bytes=8 << 30
        ),
    ]
    heartbeat = Heartbeat(
        node="n1",
        seq=1,
        sent_at=1.0,
        interval_s=1.0,
        device_type="ATLAS_I",
        load_avg=[0.5, 0.25, 0.125],
        cpu_allocatable=1.5,
        mem_allocatable_bytes=2 << 30,
        accelerators=accelerators,
    )

    decoded = messages.heartbeat_decoder.decode(encode(heartbeat))

    assert decoded.accelerators == accelerators
    assert decoded.accelerators[1].util_percent is None
    assert decoded.load_avg == [0.5, 0.25, 0.125]
    assert decoded.cpu_allocatable == 1.5
    assert decoded.mem_allocatable_bytes == 2 << 30


def test_reply_from_newer_agent_keeps_decoding():
    payload = b'{"v": 2, "id": "c1", "node": "n1", "ok": true, "extra": [1]}'

    reply = messages.reply_decoder.decode(payload)

    assert reply.ok


def test_heartbeat_carries_inventory():
    container = ContainerInfo(
        id="abc", name="web", job="web", node="n1", image="img", state="running"
    )
    heartbeat = Heartbeat(
        node="n1",
        seq=1,
        sent_at=1.0,
        interval_s=1.0,
        device_type="x86",
        containers=[container],
    )

    decoded = messages.heartbeat_decoder.decode(encode(heartbeat))

    assert decoded.containers == [container]


def test_reply_error_code_must_be_known():
    payload = b'{"id": "c1", "node": "n1", "ok": false,'
    payload += b' "error": {"code": "oops", "message": "x"}}'

    with pytest.raises(msgspec.ValidationError, match="Invalid enum value 'oops'"):
        msgspec.json.decode(payload, type=Reply)


def test_node_view_without_link_fields_decodes():
    payload = (
        b'{"v":1,"ok":true,"nodes":[{"name":"n1","state":"offline",'
        b'"device_type":"x86","last_seen":12.5}]}'
    )

    reply = messages.api_reply_decoder.decode(payload)

    node = reply.nodes[0]
    assert node.state == "offline"
    assert node.planned_return is None
    assert node.rtt_ms is None
    assert node.link_rate_bps is None
    assert reply.node is None
