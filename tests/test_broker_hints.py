import pytest

from broker.hints import broker_command


@pytest.mark.parametrize(
    ("url", "command"),
    [
        ("nats://127.0.0.1:4222", "broker"),
        ("nats://127.0.0.1", "broker"),
        ("nats://127.0.0.1:43117", "broker --port 43117"),
        ("nats://127.0.0.1:notaport", "broker"),
    ],
)
def test_broker_command_names_the_port(url, command):
    assert broker_command(url) == command
