import pytest
from click.testing import CliRunner

from controller.cli import cli
from controller.config_file import ConfigFileError, load_config_file


def test_placement_section_loads(tmp_path):
    path = tmp_path / "controller.yaml"
    path.write_text(
        "placement:\n  strategy: spread\n  spread_over: zone\n"
        "  weights: {cpu: 2, link: 1}\n  start_time: 30s\n"
    )

    placement = load_config_file(path).placement

    assert placement.strategy == "spread"
    assert placement.spread_over == "zone"
    assert placement.weights == {"cpu": 2.0, "link": 1.0}
    assert placement.start_s() == 30.0


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "controller.yaml"
    path.write_text("")

    assert load_config_file(path).placement.strategy == "load"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("placement: {strategy: fastest}\n", "Invalid enum value 'fastest'"),
        ("placement: {weights: {disk: 1}}\n", "unknown weights ['disk']"),
        ("scheduling: {}\n", "unknown field `scheduling`"),
        ("placement: [\n", "is not valid YAML"),
    ],
)
def test_bad_file_names_itself_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "controller.yaml"
    path.write_text(text)

    with pytest.raises(ConfigFileError) as caught:
        load_config_file(path)

    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_config_file(tmp_path / "absent.yaml")


def test_serve_rejects_a_bad_config_before_connecting(tmp_path):
    path = tmp_path / "controller.yaml"
    path.write_text("placement: {strategy: spread}\n")

    result = CliRunner().invoke(cli, ["serve", "--config", str(path)])

    assert result.exit_code == 2
    assert "spread strategy needs spread_over" in result.output


def test_serve_strategy_flag_is_checked_with_the_file(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--strategy", "spread"])

    assert result.exit_code == 2
    assert "needs spread_over" in result.output
