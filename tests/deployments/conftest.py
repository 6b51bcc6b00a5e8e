"""Every deployment test starts without QR_* variables and with a fresh plugin registry."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from qr_sampler.plugins.registry import get_registry


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("QR_"):
            monkeypatch.delenv(name)
    get_registry.cache_clear()
    yield
    get_registry.cache_clear()
