"""docker/entropy_server_health.py against a real qr-urandom-server, and against nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from deploy_support import REPO

HEALTH = str(REPO / "docker" / "entropy_server_health.py")


@pytest.fixture
def server_address() -> Iterator[str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "qr_urandom_server", "--address", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("qr-urandom-server listening on "), line
        yield line.split()[-1]
    finally:
        server.terminate()
        server.wait(timeout=10)


def run_health(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, HEALTH, *argv], capture_output=True, text=True, timeout=30, check=False
    )


def test_a_serving_server_is_healthy(server_address: str) -> None:
    result = run_health(server_address)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_no_server_is_unhealthy() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    result = run_health(address)
    assert result.returncode == 1
    assert result.stderr.strip() in {f"{address}: UNAVAILABLE", f"{address}: DEADLINE_EXCEEDED"}
