"""The node agent: runs the controller's commands on one board's Docker Engine.

`agent` runs the NATS session and dispatches commands to `handlers`, which
call the Docker operations of `driver`. `translate` turns a job spec into
Docker's create request, and `inventory` builds container records.
`heartbeat`, `events` and `telemetry` publish the node's state, `idempotence`
stores recent replies, `session` wraps the NATS connection, and `cli` is
the `node-agent` command.
"""
