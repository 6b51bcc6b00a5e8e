"""``qr-sampler simulate``: real records without vLLM, which verify and analyze accept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from qr_sampler.cli.main import main

REQUESTS, TOKENS = 6, 40


def simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    records = tmp_path / "sim.jsonl"
    argv = ["simulate", "--out", str(records), "--requests", str(REQUESTS)]
    assert main([*argv, "--tokens", str(TOKENS), "--vocab", "500", *extra]) == 0
    return capsys.readouterr().out


def test_two_arms_simulated_then_verified_and_analysed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_ARMS", "qrng=system,control=prng")
    monkeypatch.setenv("QR_PRNG_SEED", "7")
    monkeypatch.setenv("QR_SAMPLE_COUNT", "1024")
    out = simulate(tmp_path, capsys)
    records, archive = tmp_path / "sim.jsonl", tmp_path / "sim.jsonl.bytes"
    assert f"wrote {REQUESTS * TOKENS} token records" in out
    assert f"next: qr-sampler verify {records} --bytes {archive}" in out
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(lines) == REQUESTS * TOKENS
    assert {r["arm"] for r in lines} == {"qrng", "control"}
    assert {(r["arm"], r["entropy_source"]) for r in lines} == {
        ("qrng", "system"),
        ("control", "prng"),
    }
    assert sorted({r["position"] for r in lines}) == list(range(TOKENS))
    assert archive.stat().st_size == REQUESTS * TOKENS * 1024

    assert main(["verify", str(records), "--bytes", str(archive)]) == 0
    assert f"checked {REQUESTS * TOKENS} record(s)" in capsys.readouterr().out
    report = tmp_path / "report"
    assert main(["analyze", str(records), "--by", "arm", "--out", str(report)]) == 0
    summary = json.loads((report / "summary.json").read_text())
    # Every step draws once per arm: TOKENS draws from each source.
    assert {s: v["draws"] for s, v in summary["fetch_latency"].items()} == {
        "system": TOKENS,
        "prng": TOKENS,
    }
    assert summary["groups"]["qrng"]["tokens"] == REQUESTS * TOKENS // 2


def test_seeds_make_a_simulation_reproducible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "prng")
    monkeypatch.setenv("QR_PRNG_SEED", "11")
    tokens = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        simulate(folder, capsys, "--seed", "3")
        lines = (folder / "sim.jsonl").read_text().splitlines()
        tokens.append([json.loads(line)["token_id"] for line in lines])
    assert tokens[0] == tokens[1]


def test_simulate_never_appends_to_an_earlier_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulate(tmp_path, capsys)
    before = (tmp_path / "sim.jsonl").read_text()
    assert main(["simulate", "--out", str(tmp_path / "sim.jsonl")]) == 2
    assert "already exists: simulate writes a fresh run" in capsys.readouterr().err
    assert (tmp_path / "sim.jsonl").read_text() == before


def test_simulate_without_torch_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["simulate", "--out", str(tmp_path / "sim.jsonl")]) == 2
    assert "needs torch" in capsys.readouterr().err
    assert not (tmp_path / "sim.jsonl").exists()


def test_help_names_the_next_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "qr-sampler verify RECORDS --bytes FILE" in text
    assert "QR_ARMS" in text
