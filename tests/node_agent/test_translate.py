"""Translation of each job spec field into Docker's create request body."""

import msgspec
import pytest

from node_agent.translate import create_body
from schemas.job import JobSpec

NODE = "node-a"


def body_for(**fields) -> dict:
    spec = msgspec.convert({"name": "job-a", "image": "img:1", **fields}, JobSpec)
    return create_body(spec, NODE)


def test_minimal_job_sets_cli_defaults():
    body = body_for()

    assert body["Image"] == "img:1"
    assert body["Cmd"] is None
    assert "Entrypoint" not in body
    assert body["Env"] == []
    assert body["HostConfig"]["NetworkMode"] == "default"
    assert body["HostConfig"]["RestartPolicy"] == {
        "Name": "no",
        "MaximumRetryCount": 0,
    }
    assert body["HostConfig"]["PortBindings"] == {}
    assert body["HostConfig"]["Devices"] == []
    assert body["HostConfig"]["Ulimits"] == []
    assert body["HostConfig"]["Dns"] == []


def test_agent_labels_added_to_job_labels():
    body = body_for(labels={"team": "edge"})

    assert body["Labels"] == {
        "team": "edge",
        "dsched.node": NODE,
        "dsched.job": "job-a",
    }


def test_command_string_split_like_shell():
    body = body_for(command="sh -c 'echo hi; sleep 1'")

    assert body["Cmd"] == ["sh", "-c", "echo hi; sleep 1"]


def test_entrypoint_list_kept():
    body = body_for(entrypoint=["/bin/sh", "-c"], command=["sleep 1"])

    assert body["Entrypoint"] == ["/bin/sh", "-c"]
    assert body["Cmd"] == ["sleep 1"]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"A": 1, "B": None}, ["A=1", "B="]),
        (["A=1", "B=x=y"], ["A=1", "B=x=y"]),
    ],
)
def test_environment_map_or_list(environment, expected):
    body = body_for(environment=environment)

    assert body["Env"] == expected


def test_privileged_and_devices():
    body = body_for(
        privileged=True,
        devices=["/dev/null:/dev/davinci0", "/dev/zero", "/dev/a:/dev/b:r"],
    )

    assert body["HostConfig"]["Privileged"] is True
    assert body["HostConfig"]["Devices"] == [
        {
            "PathOnHost": "/dev/null",
            "PathInContainer": "/dev/davinci0",
            "CgroupPermissions": "rwm",
        },
        {
            "PathOnHost": "/dev/zero",
            "PathInContainer": "/dev/zero",
            "CgroupPermissions": "rwm",
        },
        {"PathOnHost": "/dev/a", "PathInContainer": "/dev/b", "CgroupPermissions": "r"},
    ]


def test_volumes_split_into_binds_and_anonymous():
    body = body_for(volumes=["/srv/data:/data:ro", "cache:/cache", "/scratch"])

    assert body["HostConfig"]["Binds"] == ["/srv/data:/data:ro", "cache:/cache"]
    assert body["Volumes"] == {"/scratch": {}}


def test_ports_exposed_and_bound():
    body = body_for(ports=["8080:80", "127.0.0.1:9000:9000/udp", 81])

    assert body["ExposedPorts"] == {"80/tcp": {}, "9000/udp": {}, "81/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "9000/udp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}],
        "81/tcp": [{"HostIp": "", "HostPort": ""}],
    }


def test_tty_and_stdin_open_not_attached():
    body = body_for(tty=True, stdin_open=True)

    assert body["Tty"] is True
    assert body["OpenStdin"] is True
    assert body["AttachStdin"] is False
    assert body["StdinOnce"] is False


@pytest.mark.parametrize(
    ("restart", "expected"),
    [
        ("no", {"Name": "no", "MaximumRetryCount": 0}),
        ("always", {"Name": "always", "MaximumRetryCount": 0}),
        ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
        ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
        ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
    ],
)
def test_restart_policy_names(restart, expected):
    body = body_for(restart=restart)

    assert body["HostConfig"]["RestartPolicy"] == expected


def test_cpu_memory_and_shm_limits():
    body = body_for(cpus=1.5, mem_limit="256m", shm_size=1048576)

    assert body["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert body["HostConfig"]["Memory"] == 256 * 1024**2
    assert body["HostConfig"]["ShmSize"] == 1048576


def test_process_settings_copied():
    body = body_for(
        working_dir="/app", user="1000:1000", hostname="box", network_mode="host"
    )

    assert body["WorkingDir"] == "/app"
    assert body["User"] == "1000:1000"
    assert body["Hostname"] == "box"
    assert body["HostConfig"]["NetworkMode"] == "host"


def test_capabilities_normalised_like_cli():
    body = body_for(cap_add=["net_admin", "CAP_SYS_TIME", "all"], cap_drop=["mknod"])

    assert body["HostConfig"]["CapAdd"] == ["CAP_NET_ADMIN", "CAP_SYS_TIME", "ALL"]
    assert body["HostConfig"]["CapDrop"] == ["CAP_MKNOD"]


@pytest.mark.parametrize(
    "extra_hosts",
    [["db:10.0.0.2", "cache=10.0.0.3"], {"db": "10.0.0.2", "cache": "10.0.0.3"}],
)
def test_extra_hosts_use_colon_form(extra_hosts):
    body = body_for(extra_hosts=extra_hosts)

    assert body["HostConfig"]["ExtraHosts"] == ["db:10.0.0.2", "cache:10.0.0.3"]


def test_ulimits_number_or_soft_hard():
    body = body_for(ulimits={"nproc": 512, "nofile": {"soft": 1024, "hard": 2048}})

    assert body["HostConfig"]["Ulimits"] == [
        {"Name": "nproc", "Soft": 512, "Hard": 512},
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
    ]


def test_healthcheck_durations_in_nanoseconds():
    body = body_for(
        healthcheck={
            "test": "wget -q -O- http://127.0.0.1/",
            "interval": "5s",
            "timeout": "1m30s",
            "start_period": "500ms",
            "retries": 4,
        }
    )

    assert body["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q -O- http://127.0.0.1/"],
        "Interval": 5_000_000_000,
        "Timeout": 90_000_000_000,
        "StartPeriod": 500_000_000,
        "Retries": 4,
    }


def test_healthcheck_list_and_disable():
    listed = body_for(healthcheck={"test": ["CMD", "true"]})
    disabled = body_for(healthcheck={"disable": True})

    assert listed["Healthcheck"] == {"Test": ["CMD", "true"]}
    assert disabled["Healthcheck"] == {"Test": ["NONE"]}


def test_stop_signal_and_grace_rounded_up():
    body = body_for(stop_signal="SIGUSR1", stop_grace_period="1m0.5s")

    assert body["StopSignal"] == "SIGUSR1"
    assert body["StopTimeout"] == 61
