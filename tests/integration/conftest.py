"""The wheels every integration test installs from, built once per run."""

from __future__ import annotations

from pathlib import Path

import pytest
from venv_support import build_wheels


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheels(tmp_path_factory.mktemp("dist"))
