import signal
import time

from controller.cli import ExitCode
from tests.controller.fleet import INDEX_TEXT, SETTLE_S, fetch, free_port, wait_until


def test_controller_restart_keeps_jobs(fleet, unique_name):
    running, paused = unique_name("run"), unique_name("pause")
    port = free_port()
    fleet.cli("submit", fleet.job_file(running, ports=[f"127.0.0.1:{port}:80"]))
    fleet.cli("submit", fleet.job_file(paused))
    fleet.cli("pause", paused)
    fleet.controller.stop()

    fleet.start_controller()
    fleet.wait_for_node()
    jobs = fleet.jobs()
    stopped = fleet.cli("stop", running)

    assert jobs[running]["desired"] == "running"
    assert jobs[running]["state"] == "running"
    assert jobs[paused]["desired"] == "paused"
    assert jobs[paused]["state"] == "paused"
    assert stopped.exit_code == ExitCode.OK, stopped.output
    assert fleet.container_state(running) == "exited"


def test_job_submitted_while_controller_restarts(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    fleet.cli(
        "submit", fleet.job_file(name, ports=[f"127.0.0.1:{port}:80"]), "--no-wait"
    )
    fleet.controller.stop()

    fleet.start_controller()

    wait_until(lambda: fleet.job_state(name) == "running", f"job {name} running")
    assert fetch(port) == INDEX_TEXT


def test_agent_restart_keeps_container(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    fleet.cli("submit", fleet.job_file(name, ports=[f"127.0.0.1:{port}:80"]))
    container_id = fleet.containers(name)[0].id
    fleet.agent.stop()
    fleet.wait_for_node("lost")
    offline_page = fetch(port)
    offline_pause = fleet.cli("pause", name)

    fleet.start_agent()
    fleet.wait_for_node("online")
    wait_until(
        lambda: fleet.container_state(name) == "paused", f"container {name} paused"
    )

    assert offline_page == INDEX_TEXT
    assert offline_pause.exit_code == ExitCode.OK, offline_pause.output
    assert offline_pause.stdout.startswith(f"{name}: node {fleet.node} is lost")
    assert [c.id for c in fleet.containers(name)] == [container_id]
    assert fleet.jobs()[name]["desired"] == "paused"


def test_desired_state_applied_after_agent_returns(fleet, unique_name):
    name = unique_name("web")
    fleet.cli("submit", fleet.job_file(name))
    fleet.agent.stop()
    fleet.containers(name)[0].pause()

    fleet.start_agent()

    wait_until(
        lambda: fleet.container_state(name) == "running", f"container {name} running"
    )
    assert fleet.jobs()[name]["state"] == "running"


def test_controller_stops_cleanly_on_sigterm(fleet):
    fleet.controller.send_signal(signal.SIGTERM)

    code = fleet.controller.wait()

    assert code == 0
    assert "controller stopped" in fleet.controller.output()
    assert "Traceback" not in fleet.controller.output()


def test_killed_container_restarted_by_policy(fleet, unique_name):
    name, port = unique_name("web"), free_port()
    path = fleet.job_file(
        name, ports=[f"127.0.0.1:{port}:80"], restart="unless-stopped"
    )
    fleet.cli("submit", path)
    container = fleet.containers(name)[0]

    container.kill()

    wait_until(
        lambda: fleet.container_state(name) == "running", f"container {name} running"
    )
    wait_until(lambda: fleet.job_state(name) == "running", f"job {name} running")
    assert [c.id for c in fleet.containers(name)] == [container.id]
    assert fetch(port) == INDEX_TEXT


def test_second_controller_on_prefix_rejected(fleet):
    second = fleet.spawn("controller", "--nats", fleet.url, "serve")

    code = second.wait()

    assert code == ExitCode.CONFLICT
    assert second.output().endswith(
        f"Error: another controller already serves prefix 'dsched' on {fleet.url}; "
        "run one controller per prefix\n"
    )
    assert fleet.cli("nodes").exit_code == ExitCode.OK


def test_on_failure_retries_left_to_docker(fleet, unique_name):
    name = unique_name("fail")
    path = fleet.job_file(
        name, command=["sh", "-c", "sleep 1; exit 3"], restart="on-failure:1"
    )
    submitted = fleet.cli("submit", path)
    assert submitted.exit_code == ExitCode.OK, submitted.output

    def docker_gave_up():
        container = fleet.containers(name)[0]
        state = container.attrs["State"]
        return state["Status"] == "exited" and container.attrs["RestartCount"] == 1

    wait_until(docker_gave_up, f"Docker to restart {name} once")
    started_at = fleet.containers(name)[0].attrs["State"]["StartedAt"]
    wait_until(lambda: fleet.job_state(name) == "exited", f"job {name} exited")
    time.sleep(SETTLE_S)
    container = fleet.containers(name)[0]

    assert container.status == "exited"
    assert container.attrs["State"]["StartedAt"] == started_at
    assert fleet.jobs()[name]["message"] == "exited with code 3"
