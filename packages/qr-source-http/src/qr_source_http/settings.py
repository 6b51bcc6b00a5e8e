"""``QR_HTTP_*``: what the source reads from the environment, and the API it resolves to."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from qr_sampler import QRSettings
from qr_sampler.settings.base import sendable_secret
from qr_source_http.presets import GENERIC, PRESETS, URL_HINTS

PresetName = Literal["", "anu", "qrypt", "outshift", "lfd", "quantis"]
Method = Literal["GET", "POST"]
Auth = Literal["header", "bearer", "none"]
Encoding = Literal["raw", "hex", "hex_list", "base64_list", "integers", "decimal_strings"]

#: Where a call's unit count goes in the URL, a query value or a body value.
COUNT = "{count}"


@dataclass(frozen=True)
class HttpApi:
    """One service's request and reply format, preset and settings merged."""

    preset: str
    url: str
    method: str
    #: (name, value) pairs; a value may be COUNT.
    query: tuple[tuple[str, str], ...]
    #: The parsed JSON body template (None: no body); a string value COUNT is the count.
    body: Any
    auth: str
    api_key_header: str
    data_path: str
    encoding: str
    int_bits: int
    success_path: str
    error_path: str
    unit_bytes: int
    max_units_per_call: int

    @property
    def max_bytes_per_call(self) -> int:
        return self.unit_bytes * self.max_units_per_call


class HttpSourceSettings(QRSettings):
    """Fields left unset take the preset's value, else the generic default."""

    # pydantic's own error text quotes rejected inputs: the key must not show up there.
    model_config = SettingsConfigDict(env_prefix="QR_HTTP_", hide_input_in_errors=True)
    secret_fields: ClassVar[frozenset[str]] = frozenset({"api_key"})

    preset: PresetName = Field(
        default="", description="anu, qrypt, outshift, lfd, quantis; empty: generic REST"
    )
    url: str | None = Field(
        default=None,
        description="Endpoint (replaces a preset's: a mirror, a test server); https:// "
        "unless loopback; {count} is the units asked for",
    )
    method: Method | None = Field(default=None, description="GET or POST")
    query: str | None = Field(
        default=None, description="Query template, e.g. n={count}&type=hex; added to the URL"
    )
    body: str | None = Field(
        default=None, description='JSON body template for POST, e.g. {"n": "{count}"}'
    )
    auth: Auth | None = Field(
        default=None,
        description="header (QR_HTTP_API_KEY_HEADER: key), bearer (Authorization: Bearer key), "
        "none",
    )
    # repr=False: pydantic's repr would otherwise print the key.
    api_key: str = Field(default="", repr=False, description="The service's key; empty: none")
    api_key_header: str | None = Field(default=None, description="Header that carries the key")
    ca_file: str = Field(
        default="", description="PEM roots that sign the server's certificate (self-signed)"
    )
    timeout_ms: float = Field(
        default=5000, gt=0, description="Longest a draw may take, retries and waits included"
    )
    retry_count: int = Field(
        default=2, ge=0, le=20, description="Retries of a call after a 5xx, 429 or network error"
    )
    data_path: str | None = Field(
        default=None, description="Where the reply's data is, e.g. data or items[].value"
    )
    encoding: Encoding | None = Field(
        default=None,
        description="raw, hex, hex_list, base64_list, integers, decimal_strings",
    )
    int_bits: int | None = Field(
        default=None, description="Width of each integer (integers, decimal_strings): 8 to 64"
    )
    success_path: str | None = Field(
        default=None, description="A reply field that must be true (empty: none)"
    )
    error_path: str | None = Field(
        default=None, description="A reply field whose presence means failure (empty: none)"
    )
    unit_bytes: int | None = Field(default=None, ge=1, description="Bytes per unit of {count}")
    max_units_per_call: int | None = Field(
        default=None, ge=1, description="Most units one call may ask for (the service's cap)"
    )
    max_concurrent_calls: int = Field(
        default=4, ge=1, le=64, description="Calls of one draw in flight at once"
    )
    breaker_failures: int = Field(
        default=3, ge=1, description="Draws failed by network errors or 5xx that open the breaker"
    )
    breaker_recovery_s: float = Field(
        default=10.0, ge=0, description="How long an open breaker fails draws before a probe"
    )

    _key_sendable = field_validator("api_key")(staticmethod(sendable_secret))

    @field_validator("int_bits")
    @classmethod
    def _whole_bytes(cls, value: int | None) -> int | None:
        if value is not None and (value % 8 or not 8 <= value <= 64):
            raise ValueError("must be 8, 16, 24, ... or 64: whole bytes per integer")
        return value

    @model_validator(mode="after")
    def _resolves(self) -> HttpSourceSettings:
        # Left at its defaults, the source is simply not configured: a profile for another
        # source is valid. Once any QR_HTTP_* has a value of its own, the API must resolve.
        fields = type(self).model_fields
        if any(getattr(self, name) != info.default for name, info in fields.items()):
            self.api()
        return self

    def api(self) -> HttpApi:
        """The merged request and reply format; ValueError names what is wrong."""
        preset: Mapping[str, Any] = PRESETS.get(self.preset, {})

        def pick(name: str) -> Any:
            value = getattr(self, name)
            return value if value is not None else preset.get(name, GENERIC[name])

        url = pick("url")
        _check_url(url, self.preset)
        body = pick("body")
        try:
            parsed_body = json.loads(body) if body else None
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"QR_HTTP_BODY is not JSON ({exc.msg} at column {exc.colno})"
            ) from None
        query = tuple(parse_qsl(pick("query"), keep_blank_values=True))
        return HttpApi(
            preset=self.preset,
            url=url,
            method=pick("method"),
            query=query,
            body=parsed_body,
            auth=pick("auth"),
            api_key_header=pick("api_key_header"),
            data_path=pick("data_path"),
            encoding=_checked(pick("encoding"), Encoding, "QR_HTTP_ENCODING"),
            int_bits=pick("int_bits"),
            success_path=pick("success_path"),
            error_path=pick("error_path"),
            unit_bytes=pick("unit_bytes"),
            max_units_per_call=pick("max_units_per_call"),
        )


def _checked(value: str, allowed: Any, name: str) -> str:
    if value not in get_args(allowed):
        raise ValueError(f"{name}={value!r} is not one of {', '.join(get_args(allowed))}")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a DNS name
        return False


def _check_url(url: str, preset: str) -> None:
    if not url:
        hint = URL_HINTS.get(preset)
        raise ValueError(
            f"QR_HTTP_URL is empty: the {preset} preset needs your service's address, e.g. {hint}"
            if hint
            else "QR_HTTP_URL is empty: name the service's endpoint (or choose QR_HTTP_PRESET)"
        )
    parts = urlsplit(url.replace(COUNT, "0"))
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"QR_HTTP_URL={url!r} must be an https:// URL with a host")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"QR_HTTP_URL={url!r} is plain http:// to a host that is not this machine: the key "
            "and the bytes would cross the network readable by anyone on the path; use https:// "
            "(plain http:// is allowed only for 127.0.0.1, ::1 and localhost)"
        )
