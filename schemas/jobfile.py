"""Load a job file (YAML) into a JobSpec, with errors that point at a line.

Plain scalars are typed by the YAML 1.2 core rules. The plain scalars that
YAML 1.1 parsers (PyYAML, older Compose) read differently are rejected with
the line and a hint instead of being coerced either way. These are `22:22`
(a base-60 number), `yes`/`no`/`on`/`off`/`y`/`n` (booleans) and `0755`
(octal). A number where a string is expected, such as a tag `1.10`, gets the
hint to quote it, because `1.10` is the number 1.1.
"""

import re
from pathlib import Path

import msgspec
import yaml

from schemas.job import STRATEGIES, FieldError, JobSpec

FieldPath = tuple[str | int, ...]

_NULL_RE = re.compile(r"~|null|Null|NULL|")
_BOOL_WORDS = {"true": True, "True": True, "TRUE": True}
_BOOL_WORDS |= {"false": False, "False": False, "FALSE": False}
_INT_RE = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_RE = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN"
)
_YAML11_BOOLS = {
    word: value
    for words, value in (("y yes on", True), ("n no off", False))
    for lower in words.split()
    for word in (lower, lower.capitalize(), lower.upper())
}
_YAML11_BASE60_RE = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")
_YAML11_OCTAL_RE = re.compile(r"[-+]?0[0-7_]+")
_MSGSPEC_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_PATH_TOKEN_RE = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[(\.\.\.)\]")
_ANY_KEY = "..."
_EXPECTED_TYPE_RE = re.compile(r"^Expected `(?P<type>[^`]+)`")
_GOT_TYPE_RE = re.compile(r"got `(?P<type>int|float|bool)`")
_UNKNOWN_FIELD_RE = re.compile(r"Object contains unknown field `(?P<field>[^`]*)`")


class JobFileError(ValueError):
    """A job file that cannot be read, parsed or validated.

    The message is one line: `FILE:LINE: FIELD: what is wrong and the fix`.
    """

    def __init__(self, source: str, line: int | None, path: FieldPath, problem: str):
        self.source = source
        self.line = line
        self.path = path
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        field = f" {format_path(path)}:" if path else ""
        super().__init__(f"{where}:{field} {problem}")


def format_path(path: FieldPath) -> str:
    """Format a field path the way a reader of the YAML file thinks of it."""
    text = ""
    for token in path:
        text += f"[{token}]" if isinstance(token, int) else f".{token}"
    return text.lstrip(".")


def load_job_file(path: str | Path) -> JobSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(
            str(path), None, (), f"cannot read the job file: {exc}"
        ) from exc
    return load_job_text(text, str(path))


def load_job_text(text: str, source: str = "<job>") -> JobSpec:
    """Parse and validate the YAML text of one job."""
    root = _compose(text, source)
    builder = _Builder(source)
    data = builder.build(root, ())
    if not isinstance(data, dict):
        raise JobFileError(
            source, builder.lines.get((), 1), (), "expected a mapping of job fields"
        )
    try:
        spec = msgspec.convert(data, JobSpec)
    except msgspec.ValidationError as exc:
        raise _explain(exc, builder) from exc
    for path, word in builder.yaml11_bools.items():
        raise JobFileError(
            source, builder.lines[path], path, _yaml11_bool_problem(word, "str")
        )

    return spec


def _yaml11_bool_problem(word: str, expected: str) -> str:
    meaning = str(_YAML11_BOOLS[word]).lower()
    problem = (
        f"unquoted {word} is a string in YAML 1.2 but the boolean {meaning} in YAML 1.1"
    )
    if expected == "bool":
        return f"{problem}; write {meaning}"
    if "str" not in expected.split(" | "):
        return f"{problem}, and this field expects {expected}"
    return f'{problem}; quote it ("{word}") to keep the string'


def _compose(text: str, source: str) -> yaml.Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "syntax error"
        if exc.context:
            problem += f" ({exc.context})"
        raise JobFileError(source, line, (), f"invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise JobFileError(source, None, (), f"invalid YAML: {exc}") from exc
    if root is None:
        raise JobFileError(source, None, (), "the job file is empty")
    return root


class _Builder:
    """Turn a YAML node tree into plain values, noting the line of every field."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[FieldPath, int] = {}
        self.plain: dict[FieldPath, str] = {}
        self.quoted: dict[FieldPath, str] = {}
        # Plain yes/no/on/off/y/n: strings in YAML 1.2, booleans in YAML 1.1.
        self.yaml11_bools: dict[FieldPath, str] = {}

    def build(self, node: yaml.Node, path: FieldPath):
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: FieldPath) -> dict:
        result: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._fail(key_node, path, "a key must be a plain string")
            key = key_node.value
            key_path = (*path, key)
            if key in result:
                first = self.lines[key_path]
                self._fail(
                    key_node,
                    key_path,
                    f"duplicate key {key!r} (first set on line {first})",
                )
            self.lines[key_path] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, key_path)
        return result

    def _scalar(self, node: yaml.ScalarNode, path: FieldPath):
        text = node.value
        if node.style is not None:
            self.quoted[path] = text
            return text
        if node.tag != _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)):
            return self._explicit(node, path)
        self.plain[path] = text
        self._reject_yaml11(node, path, text)
        return _resolve_plain(text)

    def _explicit(self, node: yaml.ScalarNode, path: FieldPath) -> str:
        if node.tag != "tag:yaml.org,2002:str":
            self._fail(
                node, path, f"unsupported YAML tag {node.tag!r}; quote the value"
            )
        return node.value

    def _reject_yaml11(self, node: yaml.ScalarNode, path: FieldPath, text: str) -> None:
        if text in _YAML11_BOOLS:
            # Whether this is an error, and its fix, depends on the field's
            # type, so the check happens after decoding.
            self.yaml11_bools[path] = text
        if _YAML11_BASE60_RE.fullmatch(text):
            self._fail(
                node,
                path,
                f"unquoted {text} is a base-60 number in YAML 1.1 "
                f'(a port mapping must be a string); quote it: "{text}"',
            )
        if _YAML11_OCTAL_RE.fullmatch(text):
            self._fail(
                node,
                path,
                f"unquoted {text} is an octal number in YAML 1.1 and a decimal one "
                f'in YAML 1.2; quote it ("{text}") or drop the leading zero',
            )

    def _fail(self, node: yaml.Node, path: FieldPath, problem: str):
        raise JobFileError(self.source, node.start_mark.line + 1, path, problem)


# PyYAML's own resolver: a plain scalar whose tag differs from what it would
# resolve to carried an explicit tag such as `!!str`.
_RESOLVER = yaml.resolver.Resolver()


def _resolve_plain(text: str):
    if _NULL_RE.fullmatch(text):
        return None
    if text in _BOOL_WORDS:
        return _BOOL_WORDS[text]
    if _INT_RE.fullmatch(text):
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text)
    if _FLOAT_RE.fullmatch(text):
        return float(text.replace("inf", "Inf").replace("Inf", "inf"))
    return text


def _explain(exc: msgspec.ValidationError, builder: _Builder) -> JobFileError:
    """Turn msgspec's error into a JobFileError with the field's line."""
    message = str(exc)
    pattern: FieldPath = ()
    match = _MSGSPEC_PATH_RE.search(message)
    if match is not None:
        pattern = _parse_msgspec_path(match["path"])
        message = message[: match.start()]
    if isinstance(exc.__cause__, FieldError):
        pattern = (*pattern, *exc.__cause__.path)
    got = _GOT_TYPE_RE.search(message)
    path = _find_path(builder, pattern, got["type"] if got else None)

    unknown = _UNKNOWN_FIELD_RE.match(message)
    expected = _EXPECTED_TYPE_RE.search(message)
    if unknown is not None:
        path = (*path, unknown["field"])
        message = f"unknown field {unknown['field']!r}; check its spelling"
    elif path in builder.yaml11_bools:
        expected_type = expected["type"] if expected is not None else "str"
        message = _yaml11_bool_problem(builder.yaml11_bools[path], expected_type)
    elif got is not None and path in builder.plain and _expects_str(expected):
        message += f'; quote it ("{builder.plain[path]}") to make it a string'
    elif expected is not None and path in builder.quoted:
        message += _quoted_hint(builder.quoted[path], expected["type"])
    if message.startswith("Invalid enum value") and path[-1:] == ("strategy",):
        message += f"; use one of {', '.join(STRATEGIES)}"
    message = message.replace("`", "'").replace("Expected", "expected")
    message = message.replace("Invalid enum value", "invalid value")
    message = message.replace("Object missing required field", "missing required field")

    return JobFileError(builder.source, _line_of(builder.lines, path), path, message)


def _expects_str(expected: re.Match | None) -> bool:
    """Return True if the field takes a string, or its type is not known."""
    return expected is None or "str" in expected["type"].split(" | ")


def _quoted_hint(text: str, expected: str) -> str:
    """Return the fix for a quoted string where a number or boolean is expected."""
    types = set(expected.split(" | "))
    if "bool" in types:
        fix = (
            "remove the quotes" if text in ("true", "false") else "write true or false"
        )
    elif types & {"int", "float"}:
        fix = "write a number without quotes"
    else:
        return f' ("{text}")'
    return f' ("{text}"); {fix}'


def _parse_msgspec_path(text: str) -> FieldPath:
    """Parse msgspec's `.name[0][...]` path; `...` stands for any map key."""
    path: list[str | int] = []
    for name, index, wildcard in _PATH_TOKEN_RE.findall(text):
        path.append(int(index) if index else name or wildcard)
    return tuple(path)


def _find_path(builder: _Builder, pattern: FieldPath, got: str | None) -> FieldPath:
    """Return the field path that `pattern` names, filling `...` map keys.

    With a wildcard, the first plain scalar of the type msgspec reported
    (`got`) is the culprit.
    """
    if _ANY_KEY not in pattern:
        return pattern
    candidates = [path for path in builder.lines if _matches(path, pattern)]
    for path in candidates:
        text = builder.plain.get(path)
        if text is not None and type(_resolve_plain(text)).__name__ == got:
            return path
    return candidates[0] if candidates else pattern[: pattern.index(_ANY_KEY)]


def _matches(path: FieldPath, pattern: FieldPath) -> bool:
    if len(path) != len(pattern):
        return False
    return all(
        want in (have, _ANY_KEY) for have, want in zip(path, pattern, strict=True)
    )


def _line_of(lines: dict[FieldPath, int], path: FieldPath) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
