"""TLS and mutual TLS against a real secure server, with certificates made by openssl."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_test_servers import SourceFactory, field1_reply, raw_server, requested_count

from qr_sampler import ConfigValidationError, EntropyUnavailableError

UNARY = "/qr_entropy.EntropyService/GetEntropy"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _issue(directory: Path, name: str, ca: Path, ca_key: Path, san: str) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n")
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        f"/CN={name}",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "1",
        "-extfile",
        ext,
    )
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for localhost, and a client certificate."""
    root = tmp_path_factory.mktemp("pki")
    ca, ca_key = root / "ca.pem", root / "ca.key"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
    )
    server_cert, server_key = _issue(root, "server", ca, ca_key, "DNS:localhost")
    client_cert, client_key = _issue(root, "client", ca, ca_key, "DNS:client")
    return {
        "ca": ca,
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
    }


def _answer(request: bytes, context: grpc.ServicerContext) -> bytes:
    return field1_reply(os.urandom(requested_count(request)))


@pytest.fixture
def tls_server(pki: dict[str, Path], request: pytest.FixtureRequest) -> Iterator[str]:
    """A server that requires TLS, and a client certificate when the test is parametrised so."""
    require_client = getattr(request, "param", False)
    credentials = grpc.ssl_server_credentials(
        [(pki["server_key"].read_bytes(), pki["server_cert"].read_bytes())],
        root_certificates=pki["ca"].read_bytes() if require_client else None,
        require_client_auth=require_client,
    )
    with raw_server(unary={UNARY: _answer}, credentials=credentials) as address:
        yield address.replace("127.0.0.1", "localhost")  # the name in the certificate


def test_tls(tls_server: str, pki: dict[str, Path], make_source: SourceFactory) -> None:
    source = make_source(tls_server, tls=True, tls_ca_file=str(pki["ca"]))
    assert len(source.get_random_bytes(20480)) == 20480
    assert source.health_check()["tls"] is True


def test_tls_with_an_untrusted_server_fails(tls_server: str, make_source: SourceFactory) -> None:
    source = make_source(tls_server, tls=True, retry_count=0)  # system roots only
    with pytest.raises(EntropyUnavailableError, match="UNAVAILABLE"):
        source.get_random_bytes(8)


@pytest.mark.parametrize("tls_server", [True], indirect=True)
def test_mutual_tls(tls_server: str, pki: dict[str, Path], make_source: SourceFactory) -> None:
    source = make_source(
        tls_server,
        tls=True,
        tls_ca_file=str(pki["ca"]),
        tls_cert_file=str(pki["client_cert"]),
        tls_key_file=str(pki["client_key"]),
    )
    assert len(source.get_random_bytes(64)) == 64
    anonymous = make_source(tls_server, tls=True, tls_ca_file=str(pki["ca"]), retry_count=0)
    with pytest.raises(EntropyUnavailableError, match="UNAVAILABLE"):
        anonymous.get_random_bytes(8)


def test_unreadable_certificate_is_a_config_error(
    tmp_path: Path, make_source: SourceFactory
) -> None:
    with pytest.raises(ConfigValidationError, match="QR_GRPC_TLS_CA_FILE: cannot read"):
        make_source("localhost:1", tls=True, tls_ca_file=str(tmp_path / "missing.pem"))
