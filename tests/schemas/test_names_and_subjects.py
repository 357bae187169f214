import pytest

from schemas.names import check_name, is_valid_name
from schemas.subjects import Subjects


@pytest.mark.parametrize("name", ["web", "atlas-01", "A_1", "0node"])
def test_valid_names_pass(name):
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "-web", "a.b", "a*", "a>", "a b", "é", "x" * 64])
def test_invalid_names_fail(name):
    assert not is_valid_name(name)


def test_check_name_quotes_bad_value():
    with pytest.raises(ValueError, match=r"invalid node name 'a\.b'"):
        check_name("a.b", "node name")


def test_subjects_use_prefix_and_names():
    subjects = Subjects("lab.dsched")

    assert subjects.node_cmd("atlas-01") == "lab.dsched.node.atlas-01.cmd"
    assert subjects.node_hb("atlas-01") == "lab.dsched.node.atlas-01.hb"
    assert subjects.node_evt("n1", "container") == "lab.dsched.node.n1.evt.container"
    assert subjects.job_evt("web") == "lab.dsched.job.web.evt"
    assert subjects.api("submit") == "lab.dsched.api.submit"
    assert subjects.all_heartbeats == "lab.dsched.node.*.hb"


@pytest.mark.parametrize("node", ["a.b", "*", ">", "a b"])
def test_subjects_reject_wildcard_injection(node):
    with pytest.raises(ValueError, match="invalid node name"):
        Subjects().node_cmd(node)


def test_subjects_reject_unknown_api_verb():
    with pytest.raises(ValueError, match="unknown API verb 'explode'"):
        Subjects().api("explode")
