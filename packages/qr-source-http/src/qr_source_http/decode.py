"""A service's reply to bytes, exactly as its format says, or a ``MalformedReplyError``.

Nothing here guesses: a value of the wrong type, a character outside the encoding or an
integer wider than ``int_bits`` fails the call, so wrong bytes never reach a token.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from qr_source_http.failures import MalformedReplyError, ServiceFailedError
from qr_source_http.settings import HttpApi

#: How much of a reply an error message quotes.
EXCERPT = 120


def excerpt(text: str | bytes) -> str:
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    shown = " ".join(shown.split())
    return repr(shown if len(shown) <= EXCERPT else shown[:EXCERPT] + "...")


def decode_reply(api: HttpApi, body: bytes, content_type: str) -> bytes:
    """The random bytes of one successful (2xx) reply."""
    if api.encoding == "raw":
        kind = content_type.split(";")[0].strip().lower()
        # An error page or a JSON message served with 200 must not become "random" bytes.
        if kind and kind != "application/octet-stream":
            raise MalformedReplyError(
                f"expected raw octets (application/octet-stream), got {kind}: {excerpt(body)}"
            )
        return body
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MalformedReplyError(f"the reply is not JSON: {excerpt(body)}") from None
    _check_outcome(api, document)
    values = select(document, api.data_path)
    return _DECODERS[api.encoding](values, api.int_bits)


def _check_outcome(api: HttpApi, document: Any) -> None:
    if api.error_path:
        found = select(document, api.error_path, required=False)
        if found is not None:
            raise ServiceFailedError(f"the service reports an error: {excerpt(str(found))}")
    if api.success_path:
        flag = select(document, api.success_path, required=False)
        if flag is not True:
            message = document.get("message") if isinstance(document, dict) else None
            said = f" ({excerpt(str(message))})" if message else ""
            raise ServiceFailedError(f"{api.success_path} is {json.dumps(flag)}, not true{said}")


def select(document: Any, path: str, *, required: bool = True) -> Any:
    """The value at a dotted path; ``items[]`` maps the rest of the path over a list."""
    if not path:
        return document
    head, _, rest = path.partition(".")
    each = head.endswith("[]")
    key = head[:-2] if each else head
    if not isinstance(document, dict) or key not in document:
        if not required:
            return None
        keys = ", ".join(sorted(document)) if isinstance(document, dict) else type(document)
        raise MalformedReplyError(f"the reply has no {key!r} (it has: {keys})")
    value = document[key]
    if not each:
        return select(value, rest, required=required) if rest else value
    if not isinstance(value, list):
        raise MalformedReplyError(f"{key!r} is {_kind(value)}, expected a list")
    return [select(item, rest) if rest else item for item in value]


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), "null")


def _strings(values: Any, what: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise MalformedReplyError(f"expected a list of {what} strings, got {_kind(values)}")
    return values


def _hex(values: Any, _bits: int) -> bytes:
    if not isinstance(values, str):
        raise MalformedReplyError(f"expected a hex string, got {_kind(values)}")
    try:
        return bytes.fromhex(values)
    except ValueError:
        raise MalformedReplyError(f"not hex: {excerpt(values)}") from None


def _hex_list(values: Any, bits: int) -> bytes:
    return b"".join(_hex(value, bits) for value in _strings(values, "hex"))


def _base64_list(values: Any, _bits: int) -> bytes:
    try:
        return b"".join(base64.b64decode(v, validate=True) for v in _strings(values, "base64"))
    except binascii.Error as exc:
        raise MalformedReplyError(f"not base64: {exc}") from None


def _integers(values: Any, bits: int, *, as_text: bool = False) -> bytes:
    if not isinstance(values, list):
        raise MalformedReplyError(f"expected a list of integers, got {_kind(values)}")
    limit = 1 << bits
    out = bytearray()
    for value in values:
        number = _number(value, as_text)
        if not 0 <= number < limit:
            raise MalformedReplyError(f"{number} does not fit in {bits} bits")
        out += number.to_bytes(bits // 8, "big")
    return bytes(out)


def _number(value: Any, as_text: bool) -> int:
    if as_text and isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    # bool is an int in Python, but `true` is no random number.
    if not as_text and isinstance(value, int) and not isinstance(value, bool):
        return value
    expected = "a string of decimal digits" if as_text else "an integer"
    raise MalformedReplyError(f"expected {expected}, got {excerpt(json.dumps(value))}")


def _decimal_strings(values: Any, bits: int) -> bytes:
    return _integers(values, bits, as_text=True)


_DECODERS: dict[str, Callable[[Any, int], bytes]] = {
    "hex": _hex,
    "hex_list": _hex_list,
    "base64_list": _base64_list,
    "integers": _integers,
    "decimal_strings": _decimal_strings,
}
