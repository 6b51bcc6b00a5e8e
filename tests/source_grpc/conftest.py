"""Fixtures for the qr-source-grpc tests: a clean environment and real servers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest
from grpc_tools import protoc

from qr_sampler.testing import isolated_environment  # noqa: F401 - applies to every test here
from qr_source_grpc import CircuitBreakerSettings, GrpcEntropySource, GrpcSourceSettings
from qr_urandom_server.launch import serve_in_background
from qr_urandom_server.server import EntropyServer

if TYPE_CHECKING:
    from grpc_test_servers import SourceFactory

# The test modules import grpc_test_servers; this makes that work under any import mode.
sys.path.insert(0, str(Path(__file__).parent))

# The user's QRNG protocol, as the spec describes it.
QRNG_PROTO = """
syntax = "proto3";
package qrng;
message RandomRequest { int32 num_bytes = 1; }
message RandomResponse { bytes data = 1; int64 timestamp = 2; string device_id = 3; }
service QuantumRNG { rpc GetRandomBytes(RandomRequest) returns (RandomResponse); }
"""


@pytest.fixture(params=["tcp", "unix"])
def transport_address(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test server listens: a free loopback port or a socket in tmp_path."""
    return "127.0.0.1:0" if request.param == "tcp" else f"unix://{tmp_path}/entropy.sock"


@pytest.fixture
def urandom_server(transport_address: str) -> Iterator[EntropyServer]:
    with serve_in_background(transport_address) as server:
        yield server


@pytest.fixture
def make_source() -> Iterator[SourceFactory]:
    """Builds sources from keyword settings and closes them after the test.

    The adaptive deadline floor is raised so that a busy test machine does not turn a
    slow reply into a spurious timeout; the breaker tests set their own.
    """
    built: list[GrpcEntropySource] = []

    def make(
        address: str, breaker: CircuitBreakerSettings | None = None, **settings: object
    ) -> GrpcEntropySource:
        source = GrpcEntropySource(
            GrpcSourceSettings(server_address=address, **settings),
            breaker or CircuitBreakerSettings(min_timeout_ms=2000),
        )
        built.append(source)
        return source

    yield make
    for source in built:
        source.close()


@pytest.fixture
def cpu_hog() -> Iterator[None]:
    """Another process spinning on a core for the length of the test, as an engine does."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield
    hog.kill()
    hog.wait()


@pytest.fixture(scope="session")
def qrng_pb2(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The qrng proto, compiled now with grpcio-tools and imported."""
    root = tmp_path_factory.mktemp("qrng")
    (root / "qrng.proto").write_text(textwrap.dedent(QRNG_PROTO))
    status = protoc.main(
        ["grpc_tools.protoc", f"--proto_path={root}", f"--python_out={root}", "qrng.proto"]
    )
    assert status == 0
    sys.path.insert(0, str(root))
    try:
        import qrng_pb2  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(root))
    return qrng_pb2
