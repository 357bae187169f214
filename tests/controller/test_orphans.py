import time

from controller.cli import ExitCode
from tests.controller.fleet import SETTLE_S, wait_until


def run_unrecorded_container(fleet, job):
    """Start a container with the agent's labels but no job record behind it."""
    return fleet.docker.containers.run(
        fleet.image,
        ["sleep", "300"],
        name=job,
        labels={"dsched.node": fleet.node, "dsched.job": job},
        stop_signal="SIGKILL",
        detach=True,
    )


def test_container_without_job_removed(fleet, unique_name):
    job = unique_name("orphan")
    run_unrecorded_container(fleet, job)

    wait_until(lambda: not fleet.containers(job), f"container {job} removed")

    assert job not in fleet.jobs()
    assert fleet.controller.output().count(f"job {job} has no record") == 1


def test_resubmit_after_orphan_removed(fleet, unique_name):
    job = unique_name("orphan")
    run_unrecorded_container(fleet, job)
    wait_until(lambda: not fleet.containers(job), f"container {job} removed")

    result = fleet.cli("submit", fleet.job_file(job))

    assert result.exit_code == ExitCode.OK, result.output
    assert fleet.container_state(job) == "running"


def test_job_container_never_removed_as_orphan(fleet, unique_name):
    running, stopped = unique_name("run"), unique_name("stop")
    fleet.cli("submit", fleet.job_file(running))
    fleet.cli("submit", fleet.job_file(stopped))
    fleet.cli("stop", stopped)
    ids = {name: fleet.containers(name)[0].id for name in (running, stopped)}

    time.sleep(SETTLE_S)

    assert [c.id for c in fleet.containers(running)] == [ids[running]]
    assert [c.id for c in fleet.containers(stopped)] == [ids[stopped]]
    assert fleet.container_state(running) == "running"
    assert fleet.container_state(stopped) == "exited"
