"""qr-sampler's conformance suite against ``quantum_grpc`` and the real urandom server."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpc_test_servers import SourceFactory

from qr_sampler import EntropySource
from qr_sampler.testing import EntropySourceConformance
from qr_urandom_server.server import EntropyServer

# Sent as call metadata (the reference server ignores it); the suite checks that it
# never shows in health output, repr or error messages.
API_KEY = "conformance-key-7f3a9c0e2b4d"


class TestGrpcSourceConformance(EntropySourceConformance):
    """Every mode, over TCP and a unix socket (``urandom_server`` is parametrized)."""

    @pytest.fixture(params=["unary", "server_streaming", "bidi_streaming"])
    def source(
        self,
        request: pytest.FixtureRequest,
        urandom_server: EntropyServer,
        make_source: SourceFactory,
    ) -> EntropySource:
        return make_source(urandom_server.address, mode=request.param, api_key=API_KEY)

    @pytest.fixture
    def unavailable_source(self, tmp_path: Path, make_source: SourceFactory) -> EntropySource:
        return make_source(
            f"unix://{tmp_path}/nothing-listens.sock",
            retry_count=0,
            timeout_ms=500,
            api_key=API_KEY,
        )
