"""Each preset with the fake that speaks its documented format, and how to point one at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import http_fakes
from http_fakes import FakeService, Handler, serving

KEY = "fake-service-key-3b7e91c2d4"


@dataclass(frozen=True)
class Case:
    preset: str
    handler: Callable[[], Handler]
    #: What one call may return at most, as the service documents it.
    bytes_per_call: int
    #: Appended to the fake's address to make QR_HTTP_URL.
    path: str = ""
    tls: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


CASES = {
    "anu": Case("anu", lambda: http_fakes.anu(KEY), 20_480, settings={"api_key": KEY}),
    "qrypt": Case("qrypt", lambda: http_fakes.qrypt(KEY), 512 * 1024, settings={"api_key": KEY}),
    "outshift": Case("outshift", lambda: http_fakes.outshift(KEY), 1000, settings={"api_key": KEY}),
    "lfd": Case("lfd", http_fakes.lfd, 1024),
    "quantis": Case("quantis", http_fakes.quantis, 1 << 20, "/api/2.0/streambytes", tls=True),
}

#: The service no preset knows, configured by settings alone.
GENERIC_SETTINGS: dict[str, Any] = {
    "method": "POST",
    "body": '{"want": {"words": "{count}"}}',
    "auth": "header",
    "api_key_header": "X-Token",
    "api_key": KEY,
    "data_path": "result.words[].value",
    "encoding": "integers",
    "int_bits": 32,
    "success_path": "ok",
    "unit_bytes": 4,
    "max_units_per_call": 2048,
}


@contextmanager
def fake_for(case: Case, folder: Path) -> Iterator[tuple[FakeService, dict[str, Any]]]:
    """The case's fake, running, and the settings that point its preset at it."""
    tls, ca_file = http_fakes.self_signed(folder) if case.tls else (None, None)
    with serving(case.handler(), tls) as service:
        settings: dict[str, Any] = {
            "preset": case.preset,
            "url": service.url + case.path,
            **case.settings,
        }
        if ca_file is not None:
            settings["ca_file"] = str(ca_file)
        yield service, settings
