"""The http and device sources inside the engine: one vLLM server with two arms, `qrng`
drawing from a fake of the ANU service (its own process, killed mid-run) and `local`
from a character device."""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from engine_support import MODEL_NAME, Process, VllmServer, clean_env, free_port

pytestmark = pytest.mark.timeout(300)

FAKES = Path(__file__).resolve().parents[1] / "source_http" / "http_fakes.py"
API_KEY = "engine-anu-key-9d4e0b7a21"


class FakeAnu(Process):
    """The ANU fake on a fixed loopback port, so that a restart is found again."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = clean_env({"FAKE_KEY": API_KEY})
        super().__init__([sys.executable, str(FAKES), str(self.port)], env, log_dir / "anu.log")

    def start(self) -> None:
        super().start()
        self.wait_for_port(self.port, "the ANU fake")


@pytest.fixture(scope="module")
def engine(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VllmServer, FakeAnu]]:
    run_dir = tmp_path_factory.mktemp("http-device")
    anu = FakeAnu(run_dir)
    anu.start()
    settings = {
        "QR_ARMS": "qrng=http,local=device",
        "QR_HTTP_PRESET": "anu",
        "QR_HTTP_URL": anu.url,
        "QR_HTTP_API_KEY": API_KEY,
        "QR_HTTP_TIMEOUT_MS": "3000",
        "QR_HTTP_BREAKER_RECOVERY_S": "1",
        "QR_DEVICE_PATH": "/dev/urandom",
        "QR_LOG_LEVEL": "full",
    }
    server = VllmServer(tiny_model, run_dir, settings)
    try:
        server.start()
        yield server, anu
    finally:
        server.stop()
        anu.stop()


def generate(server: VllmServer, arm: str, tokens: int, **xargs: Any) -> list[dict[str, Any]]:
    """One request of exactly ``tokens`` tokens on ``arm``; returns its records."""
    tag = uuid.uuid4().hex[:12]
    reply = server.client().completions.create(
        model=MODEL_NAME,
        prompt="The entropy source",
        max_tokens=tokens,
        extra_body={"vllm_xargs": {"qr_tag": tag, "qr_arm": arm, **xargs}, "ignore_eos": True},
    )
    return server.records_of(tag, int(reply.usage.completion_tokens))


def test_tokens_come_from_the_http_and_the_device_source_and_records_say_so(
    engine: tuple[VllmServer, FakeAnu],
) -> None:
    server, _ = engine
    with ThreadPoolExecutor(2) as pool:
        qrng, local = pool.map(lambda arm: generate(server, arm, 16), ["qrng", "local"])
    assert len(qrng) == len(local) == 16
    assert {(r["arm"], r["entropy_source"], r["fallback"]) for r in qrng} == {
        ("qrng", "http", False)
    }
    assert {(r["arm"], r["entropy_source"], r["fallback"]) for r in local} == {
        ("local", "device", False)
    }
    assert {r["sample_count"] for r in qrng + local} == {20480}


def test_seven_bytes_a_token_with_uniform_bits_in_the_engine(
    engine: tuple[VllmServer, FakeAnu],
) -> None:
    server, _ = engine
    records = generate(
        server, "qrng", 8, qr_signal_amplifier_type="uniform_bits", qr_sample_count=7
    )
    assert len(records) == 8
    assert {
        (r["entropy_source"], r["signal_amplifier_type"], r["sample_count"]) for r in records
    } == {("http", "uniform_bits", 7)}
    assert all(0 < r["u"] < 1 for r in records)


def test_killing_the_service_gives_flagged_fallback_then_recovery(
    engine: tuple[VllmServer, FakeAnu],
) -> None:
    server, anu = engine
    anu.stop(signal.SIGKILL)
    during = generate(server, "qrng", 12)
    assert len(during) == 12
    assert all(r["fallback"] and r["entropy_source"] == "system" for r in during)
    assert {r["fallback_reason"] for r in during} == {"source unavailable"}
    # The other arm's source is not affected.
    assert not any(r["fallback"] for r in generate(server, "local", 4))
    assert server.healthy()

    anu.start()
    # The breaker probes the service again after its recovery window; then no fallback.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not any(r["fallback"] for r in generate(server, "qrng", 4)):
            break
    after = generate(server, "qrng", 16)
    assert [r for r in after if r["fallback"]] == []
    assert {r["entropy_source"] for r in after} == {"http"}


def test_the_key_is_in_no_log_and_no_record(engine: tuple[VllmServer, FakeAnu]) -> None:
    server, _ = engine
    generate(server, "qrng", 4)
    assert "qr-sampler token" in server.log()  # QR_LOG_LEVEL=full logs every record
    assert API_KEY not in server.log()
    assert API_KEY not in server.records_path.read_text()
