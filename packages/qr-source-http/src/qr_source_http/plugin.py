"""The ``qr_sampler`` entry point: installing the package is all it takes."""

from __future__ import annotations

from collections.abc import Callable

from qr_sampler import hookimpl
from qr_source_http.settings import HttpSourceSettings
from qr_source_http.source import HttpEntropySource


@hookimpl
def register_entropy_sources(register: Callable[..., None]) -> None:
    register(HttpEntropySource.name, HttpEntropySource, settings=(HttpSourceSettings,))
