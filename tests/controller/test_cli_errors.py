import socket

import yaml

from controller.cli import ExitCode
from tests.controller.fleet import free_port


def assert_nothing_left(fleet, name):
    assert name not in fleet.jobs()
    assert fleet.containers(name) == []


def assert_one_line(result):
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_invalid_job_name_rejected(fleet, unique_name):
    name = unique_name("bad") + ".dot"
    path = fleet.tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": name, "image": fleet.image}))

    result = fleet.cli("submit", str(path))

    assert result.exit_code == ExitCode.INVALID
    assert_one_line(result)
    assert "bad.yaml" in result.stderr
    assert "name" in result.stderr
    assert_nothing_left(fleet, name)


def test_unknown_node_rejected(fleet, unique_name):
    name, node = unique_name("web"), unique_name("absent")
    path = fleet.job_file(name, placement={"node": node})

    result = fleet.cli("submit", path)

    assert result.exit_code == ExitCode.NOT_FOUND
    assert_one_line(result)
    assert f"node {node!r} is not registered" in result.stderr
    assert_nothing_left(fleet, name)


def test_no_matching_node_rejected(fleet, unique_name):
    name = unique_name("web")
    placement = {"device_type": "ATLAS_I", "labels": {"zone": "test"}}
    path = fleet.job_file(name, placement=placement)

    result = fleet.cli("submit", path)

    assert result.exit_code == ExitCode.UNAVAILABLE
    assert_one_line(result)
    assert f"no node can take job {name}" in result.stderr
    assert "device_type rules out 1 node" in result.stderr
    assert "not 'ATLAS_I'" in result.stderr
    assert_nothing_left(fleet, name)


def test_duplicate_job_name_rejected(fleet, unique_name):
    name = unique_name("web")
    path = fleet.job_file(name)
    fleet.cli("submit", path)
    container_id = fleet.containers(name)[0].id

    result = fleet.cli("submit", path)

    assert result.exit_code == ExitCode.CONFLICT
    assert_one_line(result)
    assert f"job {name!r} already exists" in result.stderr
    assert [c.id for c in fleet.containers(name)] == [container_id]
    assert fleet.jobs()[name]["state"] == "running"


def test_verb_on_unknown_job(fleet, unique_name):
    name = unique_name("ghost")

    results = {verb: fleet.cli(verb, name) for verb in ("start", "stop", "pause")}

    for verb, result in results.items():
        assert result.exit_code == ExitCode.NOT_FOUND, verb
        assert_one_line(result)
        assert f"job {name!r} not found; see `controller jobs`" in result.stderr


def test_pause_of_stopped_job(fleet, unique_name):
    name = unique_name("web")
    fleet.cli("submit", fleet.job_file(name))
    fleet.cli("stop", name)

    result = fleet.cli("pause", name)

    assert result.exit_code == ExitCode.CONFLICT
    assert_one_line(result)
    assert fleet.jobs()[name]["desired"] == "stopped"
    assert fleet.container_state(name) == "exited"


def test_missing_image_rejected(fleet, unique_name):
    name = unique_name("noimage")
    image = f"dsched/{unique_name('absent')}:none"
    path = fleet.job_file(name, image=image)

    result = fleet.cli("submit", path, "--timeout", "60")

    assert result.exit_code != ExitCode.OK
    assert_one_line(result)
    assert image in result.stderr
    assert_nothing_left(fleet, name)


def test_host_port_in_use(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    path = fleet.job_file(name, ports=[f"127.0.0.1:{port}:80"])
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()

        result = fleet.cli("submit", path)

    assert result.exit_code != ExitCode.OK
    assert_one_line(result)
    assert str(port) in result.stderr
    assert_nothing_left(fleet, name)


def test_missing_device_rejected(fleet, unique_name):
    name = unique_name("nodev")
    device = f"/dev/{unique_name('absent')}"
    path = fleet.job_file(name, devices=[device])

    result = fleet.cli("submit", path)

    assert result.exit_code != ExitCode.OK
    assert_one_line(result)
    assert device in result.stderr
    assert_nothing_left(fleet, name)


def test_missing_job_file(fleet, tmp_path):
    result = fleet.cli("submit", str(tmp_path / "absent.yaml"))

    assert result.exit_code == ExitCode.INVALID
    assert_one_line(result)
    assert "absent.yaml" in result.stderr


def test_zero_timeout_is_usage_error(fleet, unique_name):
    path = fleet.job_file(unique_name("web"))

    result = fleet.cli("submit", path, "--timeout", "0")

    assert result.exit_code == ExitCode.USAGE
    assert "Invalid value for '--timeout'" in result.stderr


def test_invalid_job_argument(fleet):
    result = fleet.cli("stop", "a.b")

    assert result.exit_code == ExitCode.USAGE
    assert "invalid job name 'a.b'" in result.stderr
