"""Decoding of wire messages: the one place msgspec errors become controller errors."""

import msgspec

from controller.errors import InvalidRequestError


def decode(decoder: msgspec.json.Decoder, data: bytes, what: str):
    """Decode `data` with `decoder`, or raise InvalidRequestError naming `what`.

    msgspec's message names the field path, for example `at $.spec.ports[0]`.
    """
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidRequestError(f"invalid {what}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"invalid {what}: not valid JSON ({exc})") from exc
