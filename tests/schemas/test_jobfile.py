import textwrap

import pytest

from schemas.job import JobSpec, Placement
from schemas.jobfile import JobFileError, load_job_file, load_job_text


def load(text: str) -> JobSpec:
    return load_job_text(textwrap.dedent(text), "job.yaml")


def load_error(text: str) -> JobFileError:
    with pytest.raises(JobFileError) as info:
        load(text)
    return info.value


FULL_JOB = """\
    name: yolo
    image: "ascend/yolov5:1.10"
    command: python3 serve.py --port 80
    entrypoint: ["/bin/sh", "-c"]
    environment:
      ASCEND_VISIBLE_DEVICES: "0"
      WORKERS: 4
    privileged: true
    devices: ["/dev/davinci0", "/dev/zero:/dev/npu0:rw"]
    volumes: ["/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro"]
    ports: ["8080:80", "127.0.0.1:9000:9000/udp"]
    tty: true
    stdin_open: true
    network_mode: bridge
    restart: unless-stopped
    cpus: 1.5
    mem_limit: 512m
    labels: {team: edge}
    working_dir: /app
    user: "1000:1000"
    hostname: yolo-box
    cap_add: [SYS_ADMIN]
    cap_drop: [NET_RAW]
    shm_size: 1g
    extra_hosts: ["registry.lab:127.0.0.1"]
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    healthcheck:
      test: ["CMD", "true"]
      interval: 10s
      retries: 3
    stop_signal: SIGINT
    stop_grace_period: 1m30s
    placement:
      node: atlas-01
      device_type: ATLAS_I
      labels: {site: lab}
    """


def test_full_job_file_loads_every_field():
    spec = load(FULL_JOB)

    assert spec.name == "yolo"
    assert spec.image == "ascend/yolov5:1.10"
    assert spec.command == "python3 serve.py --port 80"
    assert spec.environment_dict() == {"ASCEND_VISIBLE_DEVICES": "0", "WORKERS": "4"}
    assert spec.privileged is True
    assert spec.devices == ["/dev/davinci0", "/dev/zero:/dev/npu0:rw"]
    assert spec.ports == ["8080:80", "127.0.0.1:9000:9000/udp"]
    assert spec.cpus == 1.5
    assert spec.mem_limit == "512m"
    assert spec.user == "1000:1000"
    assert spec.ulimits["nproc"] == 512
    assert spec.healthcheck.retries == 3
    assert spec.stop_grace_s() == 90.0
    assert spec.placement == Placement(
        node="atlas-01", device_type="ATLAS_I", labels={"site": "lab"}
    )


def test_example_job_files_load():
    from pathlib import Path

    examples = Path(__file__).parents[2] / "examples"

    names = [load_job_file(path).name for path in sorted(examples.glob("*.yaml"))]

    assert "web" in names
    assert "yolov5-atlas" in names
    assert "field-web" in names


def test_missing_file_names_path():
    with pytest.raises(JobFileError, match="nope.yaml: cannot read the job file"):
        load_job_file("nope.yaml")


def test_syntax_error_gives_line():
    error = load_error("name: web\nimage: [x\n")

    assert error.line == 3
    assert "invalid YAML" in str(error)


def test_tab_indentation_gives_line():
    error = load_error("name: web\n\timage: x\n")

    assert error.line == 2
    assert str(error).startswith("job.yaml:2:")


def test_unknown_field_gives_path_and_line():
    error = load_error("name: web\nimage: x\nplacement:\n  nod: a\n")

    assert error.line == 4
    assert error.path == ("placement", "nod")
    assert "unknown field 'nod'" in str(error)


def test_wrong_type_gives_path_and_line():
    error = load_error('name: web\nimage: x\nprivileged: "true"\n')

    assert error.line == 3
    assert str(error) == (
        "job.yaml:3: privileged: expected 'bool', got 'str' (\"true\"); "
        "remove the quotes"
    )


def test_missing_required_field_is_named():
    error = load_error("name: web\n")

    assert "missing required field 'image'" in str(error)


def test_duplicate_key_names_both_lines():
    error = load_error("name: web\nimage: x\nname: other\n")

    assert error.line == 3
    assert "duplicate key 'name' (first set on line 1)" in str(error)


def test_unquoted_base60_port_is_rejected():
    error = load_error("name: web\nimage: x\nports:\n  - 22:22\n")

    assert error.line == 4
    assert error.path == ("ports", 0)
    assert 'quote it: "22:22"' in str(error)


@pytest.mark.parametrize("word", ["no", "off", "yes", "on", "No", "OFF", "y", "n"])
def test_unquoted_yaml11_boolean_is_rejected(word):
    error = load_error(f"name: web\nimage: x\nrestart: {word}\n")

    assert error.line == 3
    assert f'quote it ("{word}")' in str(error)


@pytest.mark.parametrize(("word", "meaning"), [("yes", "true"), ("off", "false")])
def test_yaml11_boolean_in_bool_field(word, meaning):
    error = load_error(f"name: web\nimage: x\nprivileged: {word}\n")

    assert error.line == 3
    assert str(error).endswith(f"in YAML 1.1; write {meaning}")


def test_yaml11_boolean_in_string_map():
    error = load_error("name: web\nimage: x\nenvironment:\n  A: b\n  DEBUG: off\n")

    assert error.line == 5
    assert error.path == ("environment", "DEBUG")
    assert str(error).endswith('quote it ("off") to keep the string')


@pytest.mark.parametrize(
    ("value", "fix"),
    [('"yes"', "write true or false"), ('"1"', "write true or false")],
)
def test_quoted_text_in_bool_field(value, fix):
    error = load_error(f"name: web\nimage: x\ntty: {value}\n")

    assert str(error).endswith(fix)


def test_quoted_number_in_float_field():
    error = load_error('name: web\nimage: x\ncpus: "1.5"\n')

    assert str(error).endswith('("1.5"); write a number without quotes')


def test_quoted_no_restart_is_accepted():
    spec = load("name: web\nimage: x\nrestart: 'no'\n")

    assert spec.restart == "no"


def test_version_like_float_label_is_rejected():
    error = load_error("name: web\nimage: x\nlabels:\n  team: a\n  version: 1.10\n")

    assert error.line == 5
    assert error.path == ("labels", "version")
    assert 'quote it ("1.10")' in str(error)


def test_version_like_float_env_is_rejected():
    error = load_error("name: web\nimage: x\nenvironment:\n  PY: 3.10\n")

    assert error.line == 4
    assert 'quote it ("3.10")' in str(error)


def test_explicit_str_tag_keeps_text():
    spec = load("name: web\nimage: x\nlabels:\n  version: !!str 1.10\n")

    assert spec.labels == {"version": "1.10"}


def test_leading_zero_number_is_rejected():
    error = load_error("name: web\nimage: x\nenvironment:\n  MODE: 0755\n")

    assert "octal number in YAML 1.1" in str(error)


def test_invalid_job_name_is_rejected():
    error = load_error("name: web.1\nimage: x\n")

    assert error.line == 1
    assert "invalid job name 'web.1'" in str(error)


def test_invalid_port_gives_item_line():
    error = load_error('name: web\nimage: x\nports:\n  - "80:80"\n  - "1:2:3:4"\n')

    assert error.line == 5
    assert error.path == ("ports", 1)


def test_duplicate_host_port_is_rejected():
    error = load_error('name: web\nimage: x\nports: ["8080:80", "8080:81"]\n')

    assert "host port '8080:81' is published twice" in str(error)


def test_bad_nested_duration_gives_line():
    error = load_error("name: web\nimage: x\nhealthcheck:\n  interval: 5x\n")

    assert error.line == 4
    assert error.path == ("healthcheck", "interval")


def test_ulimit_with_wrong_type_gives_line():
    error = load_error(
        "name: web\nimage: x\nulimits:\n  nofile:\n    soft: a\n    hard: 2\n"
    )

    assert error.line == 5
    assert error.path == ("ulimits", "nofile", "soft")


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "the job file is empty"), ("- a\n", "expected a mapping of job fields")],
)
def test_non_mapping_document_is_rejected(text, message):
    error = load_error(text)

    assert message in str(error)


def test_unsupported_tag_is_rejected():
    error = load_error("name: web\nimage: !!binary aGk=\n")

    assert "unsupported YAML tag" in str(error)


@pytest.mark.parametrize(
    ("value", "seconds"), [('"30s"', 30.0), ("12", 12.0), ("1.5", 1.5), ("1m30s", 90.0)]
)
def test_reschedule_after_accepts_durations(value, seconds):
    spec = load_job_text(f"name: a\nimage: b\nreschedule_after: {value}\n")

    assert spec.reschedule_after_s() == seconds


def test_reschedule_after_off_by_default():
    spec = load_job_text("name: a\nimage: b\n")

    assert spec.reschedule_after_s() is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0", "must be greater than 0"), ("soon", "invalid duration 'soon'")],
)
def test_invalid_reschedule_after_gives_line(value, problem):
    with pytest.raises(JobFileError) as caught:
        load_job_text(f"name: a\nimage: b\nreschedule_after: {value}\n", "job.yaml")

    assert str(caught.value).startswith("job.yaml:3: reschedule_after: ")
    assert problem in str(caught.value)


def test_pinned_job_rejects_reschedule_after():
    text = "name: a\nimage: b\nplacement: {node: n1}\nreschedule_after: 30s\n"

    with pytest.raises(JobFileError, match="has no effect on a job pinned"):
        load_job_text(text, "job.yaml")


def test_placement_keys_and_count_load():
    spec = load_job_text(
        "name: web\nimage: b\ncount: 3\n"
        "placement: {strategy: spread, spread_over: zone}\n"
    )

    assert spec.placement.strategy == "spread"
    assert spec.copy_names() == ["web-0", "web-1", "web-2"]


def test_one_copy_keeps_the_job_name():
    assert load_job_text("name: web\nimage: b\n").copy_names() == ["web"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("count: 0\n", "count: invalid count 0: must be from 1 to 1000"),
        ("count: 1001\n", "invalid count 1001"),
        (
            "placement: {strategy: random}\n",
            "invalid value 'random'; use one of load, binpack, round-robin, spread",
        ),
        ("count: 1.5\n", "count: expected 'int', got 'float'"),
        ("count: yes\n", "YAML 1.1, and this field expects int"),
        (
            "placement: {node: n1, strategy: binpack}\n",
            "strategy has no effect on a job pinned",
        ),
        ("migrate_when: {for: 5s}\n", "needs rtt_above"),
        ("migrate_when: {rtt_above: 0s}\n", "must be greater than 0"),
        ("migrate_when: {bandwidth_below: fast}\n", "invalid rate 'fast'"),
        ("migrate_when: {bandwidth_below: 100}\n", "add a unit"),
        ("migrate_when: {rtt_above: 1s, for: later}\n", "invalid duration 'later'"),
        (
            "placement: {node: n1}\nmigrate_when: {rtt_above: 1s}\n",
            "migrate_when has no effect on a job pinned",
        ),
    ],
)
def test_invalid_placement_keys_are_rejected(text, problem):
    with pytest.raises(JobFileError) as caught:
        load_job_text(f"name: web\nimage: b\n{text}", "job.yaml")

    assert problem in str(caught.value)


def test_copy_names_must_be_valid():
    name = "w" * 62

    with pytest.raises(JobFileError, match="invalid copy name"):
        load_job_text(f"name: {name}\nimage: b\ncount: 10\n", "job.yaml")


def test_migrate_when_reads_units():
    spec = load_job_text(
        "name: web\nimage: b\n"
        "migrate_when: {rtt_above: 10s, bandwidth_below: 2Mbit, for: 1m}\n"
    )

    rule = spec.migrate_when
    assert (rule.rtt_above_s(), rule.bandwidth_below_bps(), rule.for_s()) == (
        10.0,
        2e6,
        60.0,
    )
