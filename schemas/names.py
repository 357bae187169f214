"""Name rules for nodes and jobs.

Names become NATS subject tokens and Docker container names, so they may
contain neither `.`, `*`, `>` nor whitespace.
"""

import re

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]*"
MAX_NAME_LENGTH = 63

_NAME_RE = re.compile(NAME_PATTERN)


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _NAME_RE.fullmatch(name) is not None


def check_name(name: str, what: str = "name") -> str:
    """Return `name` unchanged, or raise ValueError saying which rule it breaks."""
    if not is_valid_name(name):
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits, '_' and '-', "
            f"starting with a letter or digit, at most {MAX_NAME_LENGTH} characters"
        )
    return name
