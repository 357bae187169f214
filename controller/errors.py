"""Errors raised by the controller package.

Every error carries the stable wire code that the API returns to clients:

    ControllerError           root; `code` is the API error code
    ├── InvalidRequestError   invalid: a request or message failed to decode
    ├── NotFoundError         not_found: no such job or node
    ├── ConflictError         conflict: the job exists or is in the wrong state
    ├── NoMatchingNodeError   unavailable: no online node fits the placement
    ├── NodeOfflineError      offline: no agent subscribes for the node
    ├── CommandTimeoutError   timeout: no reply within the request bound
    ├── RemoteError           a reply's error code with no class above
    ├── UnavailableError      unavailable: NATS or the controller is unreachable
    └── StateError            internal: an illegal state transition
"""

from schemas.messages import ErrorCode, ErrorInfo


class ControllerError(Exception):
    """Root of the controller's errors; `code` is the API error code."""

    code: ErrorCode = "internal"

    def info(self) -> ErrorInfo:
        return ErrorInfo(code=self.code, message=str(self))


class InvalidRequestError(ControllerError):
    code = "invalid"


class NotFoundError(ControllerError):
    code = "not_found"


class ConflictError(ControllerError):
    code = "conflict"


class NoMatchingNodeError(ControllerError):
    code = "unavailable"


class NodeOfflineError(ControllerError):
    code = "offline"


class CommandTimeoutError(ControllerError):
    """A command without a reply within `bound_s` seconds, None when unknown.

    The node may still have applied the command.
    """

    code = "timeout"

    def __init__(self, message: str, bound_s: float | None = None) -> None:
        super().__init__(message)
        self.bound_s = bound_s


class UnavailableError(ControllerError):
    code = "unavailable"


class StateError(ControllerError):
    code = "internal"


class RemoteError(ControllerError):
    """An error from a reply (docker_error, forbidden, ...), its code kept as sent."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


_BY_CODE: dict[str, type[ControllerError]] = {
    "invalid": InvalidRequestError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "offline": NodeOfflineError,
    "timeout": CommandTimeoutError,
    "unavailable": UnavailableError,
}


def error_from_info(error: ErrorInfo) -> ControllerError:
    """Rebuild the error a reply carries, as the class for its code."""
    cls = _BY_CODE.get(error.code)
    if cls is None:
        return RemoteError(error.code, error.message)
    return cls(error.message)
