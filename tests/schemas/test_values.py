import pytest

from schemas import values
from schemas.values import DeviceMapping, PortMapping, RestartPolicy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80", PortMapping(80)),
        (80, PortMapping(80)),
        ("8080:80", PortMapping(80, "tcp", "", 8080)),
        ("127.0.0.1:9000:9000/udp", PortMapping(9000, "udp", "127.0.0.1", 9000)),
        ("127.0.0.1::80", PortMapping(80, "tcp", "127.0.0.1", None)),
        ("[::1]:8080:80", PortMapping(80, "tcp", "::1", 8080)),
    ],
)
def test_parse_port_accepts_compose_syntax(text, expected):
    assert values.parse_port(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1:2:3:4", "expected [HOST_IP:]"),
        ("8080:80/icmp", "invalid protocol 'icmp'"),
        ("70000:80", "use 1 to 65535"),
        ("8000-8010:80", "port ranges are not supported"),
        ("web:80", "invalid port number 'web'"),
    ],
)
def test_parse_port_rejects_bad_syntax(text, fragment):
    with pytest.raises(ValueError) as info:
        values.parse_port(text)

    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512m", 512 * 1024**2), ("1g", 1024**3), ("1.5k", 1536), ("100", 100), (7, 7)],
)
def test_parse_size_converts_units(text, expected):
    assert values.parse_size(text) == expected


def test_parse_size_rejects_unknown_unit():
    with pytest.raises(ValueError, match="invalid size '12x'"):
        values.parse_size("12x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1m30s", 90.0), ("10s", 10.0), ("500ms", 0.5), ("1h", 3600.0), (5, 5.0)],
)
def test_parse_duration_converts_units(text, expected):
    assert values.parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "10", "1x", "s10", "1m 30s"])
def test_parse_duration_rejects_bad_syntax(text):
    with pytest.raises(ValueError, match="invalid duration"):
        values.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no", RestartPolicy("no")),
        ("always", RestartPolicy("always")),
        ("unless-stopped", RestartPolicy("unless-stopped")),
        ("on-failure", RestartPolicy("on-failure", 0)),
        ("on-failure:3", RestartPolicy("on-failure", 3)),
    ],
)
def test_parse_restart_accepts_policies(text, expected):
    assert values.parse_restart(text) == expected


def test_parse_restart_rejects_unknown_policy():
    with pytest.raises(ValueError, match="invalid restart policy 'sometimes'"):
        values.parse_restart("sometimes")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/dev/davinci0", DeviceMapping("/dev/davinci0", "/dev/davinci0", "rwm")),
        ("/dev/zero:/dev/npu0", DeviceMapping("/dev/zero", "/dev/npu0", "rwm")),
        ("/dev/zero:/dev/npu0:rw", DeviceMapping("/dev/zero", "/dev/npu0", "rw")),
    ],
)
def test_parse_device_accepts_mappings(text, expected):
    assert values.parse_device(text) == expected


@pytest.mark.parametrize("text", ["davinci0", "/dev/a:/dev/b:x", "/dev/a::rw"])
def test_parse_device_rejects_bad_mappings(text):
    with pytest.raises(ValueError, match="invalid device"):
        values.parse_device(text)


@pytest.mark.parametrize(
    "text", ["/data", "/host:/data", "cache:/data:ro", "/a:/b:rw,z"]
)
def test_check_volume_accepts_short_syntax(text):
    assert values.check_volume(text) == text


@pytest.mark.parametrize("text", ["/host:data", "/a:/b:rx", "/a::ro", "/a:/b:ro:x"])
def test_check_volume_rejects_bad_syntax(text):
    with pytest.raises(ValueError, match="invalid volume"):
        values.check_volume(text)


def test_key_value_pairs_accepts_map_and_list():
    assert values.key_value_pairs({"A": 1, "B": None}, "environment") == {
        "A": "1",
        "B": "",
    }
    assert values.key_value_pairs(["A=1", "B=x=y"], "environment") == {
        "A": "1",
        "B": "x=y",
    }


def test_key_value_pairs_rejects_bare_key():
    with pytest.raises(ValueError, match="invalid environment entry 'HOME'"):
        values.key_value_pairs(["HOME"], "environment")


def test_argv_splits_like_a_shell():
    assert values.argv("nginx -g 'daemon off;'") == ["nginx", "-g", "daemon off;"]
    assert values.argv(["a", "b c"]) == ["a", "b c"]
    assert values.argv(None) is None


def test_argv_rejects_unbalanced_quote():
    with pytest.raises(ValueError, match="invalid command"):
        values.argv("echo 'oops")
