"""What a server says about its bytes reaches the token records: the foreign qrng
protocol read by the firefly-1 profile's field numbers, the reference server by the
defaults, and a server that says nothing leaves the records' fields null."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import numpy as np
import pytest
import torch
from grpc_test_servers import raw_server

from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import QRSamplerConfig
from qr_urandom_server.launch import serve_in_background

METHOD = "/qrng.QuantumRNG/GetRandomBytes"
PROFILE = Path(__file__).resolve().parents[2] / "deployments" / "firefly-1" / ".env"
STAMP = 1_754_000_000_123


def firefly_fields() -> str:
    """The profile's own field numbers, as a deployment reads them."""
    return "".join(
        line + "\n" for line in PROFILE.read_text().splitlines() if line.endswith(
            ("_FIELD=0", "_FIELD=2", "_FIELD=3")
        ) and line.startswith("QR_GRPC_")
    )  # fmt: skip


@pytest.fixture
def qrng_servers(qrng_pb2: ModuleType) -> Iterator[dict[str, str]]:
    """Two qrng servers: one stamps its replies, the other sends the bytes only."""

    def stamped(request: bytes, context: grpc.ServicerContext) -> bytes:
        wanted = qrng_pb2.RandomRequest.FromString(request).num_bytes
        reply = qrng_pb2.RandomResponse(
            data=os.urandom(wanted), timestamp=STAMP, device_id="firefly-1"
        )
        return bytes(reply.SerializeToString())

    def bare(request: bytes, context: grpc.ServicerContext) -> bytes:
        wanted = qrng_pb2.RandomRequest.FromString(request).num_bytes
        return bytes(qrng_pb2.RandomResponse(data=os.urandom(wanted)).SerializeToString())

    with (
        raw_server(unary={METHOD: stamped}) as stamping,
        raw_server(unary={METHOD: bare}) as silent,
    ):
        yield {"stamped": stamping, "bare": silent}


def records_from(tmp_path: Path, env: str) -> list[dict[str, object]]:
    """Two steps of two requests through the real sampler and the gRPC source."""
    env_file = tmp_path / ".env"
    log = tmp_path / "tokens.jsonl"
    env_file.write_text(env + f"QR_ENTROPY_SOURCE_TYPE=quantum_grpc\nQR_LOG_PATH={log}\n")
    sampler = QRSampler(QRSamplerConfig.load(env_file=str(env_file)))
    try:
        for slot in range(2):
            sampler.admit(slot, sampler.resolve({"qr_sample_count": 1024}), [])
        for _ in range(2):
            sampler.sample(torch.randn(2, 50), np.arange(2))
    finally:
        sampler.close()
    return [json.loads(line) for line in log.read_text().splitlines()]


def qrng_env(address: str) -> str:
    return (
        f"QR_GRPC_SERVER_ADDRESS={address}\nQR_GRPC_METHOD_PATH={METHOD}\n"
        "QR_GRPC_STREAM_METHOD_PATH=\nQR_GRPC_MODE=unary\n" + firefly_fields()
    )


def test_the_firefly_profile_names_its_servers_fields():
    assert firefly_fields().splitlines() == [
        "QR_GRPC_SEQUENCE_ID_FIELD=0",
        "QR_GRPC_TIMESTAMP_FIELD=2",
        "QR_GRPC_DEVICE_ID_FIELD=3",
    ]


def test_records_carry_what_the_qrng_server_says(tmp_path, qrng_servers, monkeypatch):
    monkeypatch.setenv("QR_ENV_FILE", str(tmp_path / ".env"))
    records = records_from(tmp_path, qrng_env(qrng_servers["stamped"]))
    assert len(records) == 4
    for record in records:
        assert record["entropy_source"] == "quantum_grpc"
        assert record["device_id"] == "firefly-1"
        assert record["device_timestamp"] == STAMP
        assert record["device_sequence_id"] is None


def test_a_server_without_those_fields_works_and_records_say_nothing_was_given(
    tmp_path, qrng_servers, monkeypatch
):
    monkeypatch.setenv("QR_ENV_FILE", str(tmp_path / ".env"))
    records = records_from(tmp_path, qrng_env(qrng_servers["bare"]))
    assert len(records) == 4
    for record in records:
        assert record["fallback"] is False
        assert (record["device_id"], record["device_timestamp"]) == (None, None)
        assert record["device_sequence_id"] is None


@pytest.mark.parametrize("mode", ["unary", "server_streaming", "bidi_streaming"])
def test_the_reference_server_is_read_by_the_defaults(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("QR_ENV_FILE", str(tmp_path / ".env"))
    with serve_in_background(device_id="bench-7") as server:
        env = f"QR_GRPC_SERVER_ADDRESS={server.address}\nQR_GRPC_MODE={mode}\n"
        records = records_from(tmp_path, env)
    for record in records:
        assert record["device_id"] == "bench-7"
        assert isinstance(record["device_timestamp"], int)
        assert record["device_timestamp"] > 1_600_000_000 * 10**9
    sequence = [record["device_sequence_id"] for record in records]
    if mode == "bidi_streaming":
        assert all(isinstance(number, int) and number > 0 for number in sequence)
    else:  # only a stream's requests are numbered
        assert sequence == [None] * len(records)
