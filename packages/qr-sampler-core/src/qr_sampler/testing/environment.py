"""``isolated_environment``: tests that see nothing of the machine's qr-sampler settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qr_sampler.plugins.registry import get_registry


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No ``QR_*`` variable of the machine, an empty ``QR_ENV_FILE`` (yielded) and a plugin
    registry loaded afresh. Import it into a ``conftest.py`` and it applies to every test
    beside it: ``from qr_sampler.testing import isolated_environment``."""
    for name in list(os.environ):
        if name.startswith("QR_"):
            monkeypatch.delenv(name)
    # An empty file: a QR_ENV_FILE that does not exist is an error.
    env_file = tmp_path / "empty.env"
    env_file.write_text("", encoding="utf-8")
    monkeypatch.setenv("QR_ENV_FILE", str(env_file))
    get_registry.cache_clear()
    yield env_file
    get_registry.cache_clear()
