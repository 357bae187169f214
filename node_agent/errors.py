"""The agent's one exception, carrying a stable error code for replies.

    AgentError(code, message)
        code is an ErrorCode of the wire contract: not_found, conflict,
        invalid, docker_error, timeout, unavailable or internal.

Docker SDK and requests errors become AgentError in `node_agent.driver`,
nats-py errors in `node_agent.session`; nothing else raises library errors
to the agent.
"""

from schemas.messages import ErrorCode, ErrorInfo


class AgentError(Exception):
    """A command or a start-up step that failed, with a code for scripts."""

    def __init__(self, code: ErrorCode, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        # The cause alone, without advice, for logs that repeat it.
        self.reason = reason or message

    def to_info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=self.message)
