"""``qr_sampler.testing.isolated_environment``, as a source package's conftest uses it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qr_sampler.settings.config import QRSamplerConfig
from qr_sampler.testing import isolated_environment  # noqa: F401 - applies to every test here


@pytest.fixture(scope="module", autouse=True)
def machine_setting() -> Iterator[None]:
    """A setting of the machine, there before the function-scoped fixture runs."""
    os.environ["QR_TOP_K"] = "7"
    yield
    del os.environ["QR_TOP_K"]


def test_the_machine_settings_are_gone_and_the_env_file_is_empty(
    isolated_environment: Path,  # noqa: F811 - the fixture, by name
) -> None:
    assert [name for name in os.environ if name.startswith("QR_")] == ["QR_ENV_FILE"]
    assert os.environ["QR_ENV_FILE"] == str(isolated_environment)
    assert isolated_environment.read_text("utf-8") == ""
    assert QRSamplerConfig.load().top_k == 0
