"""Experiment arms: each arm its own source, one draw per arm per step, records say which."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from core_support import documented_stream

from qr_sampler.entropy.amplification import ZScoreMeanAmplifier
from qr_sampler.errors import ConfigValidationError
from qr_sampler.records.provenance import sha256_hex
from qr_sampler.records.verify import verify
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import QRSamplerConfig

InstallPlugin = Callable[..., Path]
COUNT = 256
STUCK_PLUGIN = """
from qr_sampler import EntropySource, hookimpl



class StuckSource(EntropySource):
    name = "{name}"

    def get_random_bytes(self, n):
        return bytes([0x5A]) * n


@hookimpl
def register_entropy_sources(register):
    register("{name}", StuckSource)
"""


def arm_sampler(tmp_path: Path, **settings: object) -> QRSampler:
    settings.setdefault("log_path", str(tmp_path / "tokens.jsonl"))
    config = QRSamplerConfig.load(env_file=str(tmp_path / "absent.env"), **settings)
    return QRSampler(config=config)


def step(sampler: QRSampler, arms: list[str | None]) -> list[dict[str, object]]:
    """Admit one request per arm name (None: let the server decide) and sample once."""
    for slot, arm in enumerate(arms):
        extra: dict[str, object] = {"qr_sample_count": COUNT, "qr_tag": str(slot)}
        if arm is not None:
            extra["qr_arm"] = arm
        sampler.table.put(slot, sampler.resolve(extra))
    sampler.sample(torch.randn(len(arms), 40), np.arange(len(arms)))
    sampler.sink.flush()
    log = Path(sampler.config.log_path)
    return [json.loads(line) for line in log.read_text().splitlines()][-len(arms) :]


def test_a_mixed_batch_draws_once_per_arm_and_records_each_rows_arm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_PRNG_SEED", "77")
    sampler = arm_sampler(tmp_path, arms="qrng=system, control=prng")
    sizes: dict[str, list[int]] = {"qrng": [], "control": []}
    for arm in sampler.arms.arms:
        assert arm.source is not None
        primary = arm.source.primary
        original = primary.get_random_bytes
        monkeypatch.setattr(
            primary,
            "get_random_bytes",
            lambda n, o=original, s=sizes[arm.name]: s.append(n) or o(n),
        )
    chosen = ["control", "qrng", "qrng", "control", "control", "qrng"]
    records = step(sampler, chosen)

    assert sizes == {"qrng": [3 * COUNT], "control": [3 * COUNT]}
    assert [r["arm"] for r in records] == chosen
    assert [r["entropy_source"] for r in records] == [
        "prng" if arm == "control" else "system" for arm in chosen
    ]
    assert [r["prng_seed"] for r in records] == [77 if a == "control" else None for a in chosen]
    # The control rows read the prng stream in row order, COUNT bytes each.
    stream = np.frombuffer(documented_stream(77, 3 * COUNT), dtype=np.uint8)
    control = [r for r in records if r["arm"] == "control"]
    for i, record in enumerate(control):
        chunk = stream[i * COUNT : (i + 1) * COUNT]
        assert record["sample_mean"] == pytest.approx(float(chunk.mean()), abs=1e-12)
    # Same decisive settings in both arms: the arms differ only in their bytes.
    assert len({r["config_hash"] for r in records}) == 1


def test_without_qr_arms_there_is_one_arm_named_after_the_source(tmp_path: Path) -> None:
    records = step(arm_sampler(tmp_path), [None, None])
    assert [r["arm"] for r in records] == ["system", "system"]
    assert {r["entropy_source"] for r in records} == {"system"}


def test_a_request_without_qr_arm_joins_the_first_arm(tmp_path: Path) -> None:
    records = step(arm_sampler(tmp_path, arms="b=prng,a=system"), [None, "a"])
    assert [r["arm"] for r in records] == ["b", "a"]


def test_an_unknown_arm_is_refused(tmp_path: Path) -> None:
    sampler = arm_sampler(tmp_path, arms="qrng=system,control=prng")
    with pytest.raises(ConfigValidationError, match=r"unknown arm 'placebo'.*qrng, control"):
        sampler.resolve({"qr_arm": "placebo"})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a=system,a=prng", "listed twice"),
        ("a", "not name=source"),
        ("a=", "not name=source"),
        ("a b=system", "arm name 'a b'"),
    ],
)
def test_bad_qr_arms_names_the_variable(
    value: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_ARMS", value)
    with pytest.raises(ConfigValidationError, match=f"QR_ARMS.*{problem}"):
        QRSamplerConfig.load()


def test_an_arm_naming_an_uninstalled_source_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigValidationError, match="QR_ARMS source='quantum_nope' is not an installed"
    ):
        arm_sampler(tmp_path, arms="a=system,b=quantum_nope")


def test_random_assignment_is_reproducible_from_its_seed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def assignments(seed: int) -> list[str]:
        sampler = arm_sampler(
            tmp_path, arms="qrng=system,control=prng", arm_assignment="random", arm_seed=seed
        )
        return [sampler.resolve({}).arm for _ in range(40)]

    with caplog.at_level(logging.INFO, logger="qr_sampler"):
        first = assignments(11)
    assert first == assignments(11) != assignments(12)
    assert set(first) == {"qrng", "control"}
    assert "assignment random (QR_ARM_SEED=11)" in caplog.text


def test_random_assignment_refuses_a_request_chosen_arm(tmp_path: Path) -> None:
    sampler = arm_sampler(tmp_path, arms="qrng=system,control=prng", arm_assignment="random")
    with pytest.raises(ConfigValidationError, match="assigns arms at random"):
        sampler.resolve({"qr_arm": "qrng"})
    assert sampler.arms.seed is not None  # unset QR_ARM_SEED: a random seed, logged


def test_blind_arms_write_opaque_labels_and_a_key_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="qr_sampler"):
        sampler = arm_sampler(tmp_path, arms="qrng=system,control=prng", blind_arms=True)
    records = step(sampler, ["qrng", "control", "qrng"])
    labels = [r["arm"] for r in records]
    assert not {"qrng", "control"} & set(labels)
    assert labels[0] == labels[2] != labels[1]

    (key_file,) = tmp_path.glob("tokens.jsonl.blind-key-*.json")
    assert str(key_file) in caplog.text
    assert not any(label in caplog.text for label in labels)
    key = json.loads(key_file.read_text())["labels"]
    for record in records:
        assert key[record["arm"]]["entropy_source"] == record["entropy_source"]
    assert key[labels[0]]["arm"] == "qrng"


def test_a_stuck_arm_fails_its_health_tests_and_only_its_tokens_are_flagged(
    tmp_path: Path, install_plugin: InstallPlugin
) -> None:
    install_plugin("stuck", code=STUCK_PLUGIN.format(name="stuck"))
    sampler = arm_sampler(tmp_path, arms="device=stuck,control=prng")
    sampler.summary.interval_s = 0.0
    records = step(sampler, ["device", "control", "device"])
    assert [(r["arm"], r["entropy_source"], r["fallback"]) for r in records] == [
        ("device", "system", True),
        ("control", "prng", False),
        ("device", "system", True),
    ]
    assert [r["fallback_reason"] for r in records] == ["health test", None, "health test"]


def test_the_summary_line_counts_failed_health_tests(
    tmp_path: Path, install_plugin: InstallPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    install_plugin("stuck", code=STUCK_PLUGIN.format(name="stuck"))
    sampler = arm_sampler(tmp_path, arms="device=stuck,control=prng")
    sampler.summary.interval_s = 0.0
    with caplog.at_level(logging.INFO, logger="qr_sampler"):
        step(sampler, ["device", "control"])
    assert "fallback tokens 1; failed health tests 1" in caplog.text


def test_zscore_of_each_arm_uses_only_that_arms_bytes(tmp_path: Path) -> None:
    # A stuck-free pair of arms: the control arm's u is what its own bytes give.
    sampler = arm_sampler(
        tmp_path, arms="x=system,y=prng", health_tests=False, log_path=str(tmp_path / "t.jsonl")
    )
    records = step(sampler, ["y"])
    seed = records[0]["prng_seed"]
    assert isinstance(seed, int)
    data = np.frombuffer(documented_stream(seed, COUNT), dtype=np.uint8)
    defaults = sampler.defaults
    replay = ZScoreMeanAmplifier().amplify(
        data,
        np.array([0]),
        np.array([COUNT]),
        {
            "population_mean": np.array([defaults.population_mean]),
            "population_std": np.array([defaults.population_std]),
            "uniform_clamp_epsilon": np.array([defaults.uniform_clamp_epsilon]),
        },
    )
    assert records[0]["u"] == replay.u[0]


def test_without_qr_arms_an_unknown_source_is_named_by_qr_entropy_source_type(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigValidationError, match="QR_ENTROPY_SOURCE_TYPE='quantum_nope'"):
        arm_sampler(tmp_path, entropy_source_type="quantum_nope")


def test_an_honest_two_arm_run_verifies_against_its_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_PRNG_SEED", "9")
    log, archive = tmp_path / "tokens.jsonl", tmp_path / "bytes.bin"
    sampler = arm_sampler(tmp_path, arms="qrng=system,control=prng", bytes_path=str(archive))
    # Arms interleaved and of different sizes, so each arm's bytes sit apart.
    plan = [("control", 300), ("qrng", 512), ("qrng", 100), ("control", 700)]
    for slot, (arm, count) in enumerate(plan):
        extra = {"qr_arm": arm, "qr_sample_count": count}
        sampler.admit(slot, sampler.resolve(extra), [])
    for _ in range(3):
        sampler.sample(torch.randn(len(plan), 40), np.arange(len(plan)))
    sampler.close()

    records = [json.loads(line) for line in log.read_text().splitlines()]
    report = verify(str(log), str(archive))
    assert (report.checked, report.mismatches) == (12, [])
    data = archive.read_bytes()
    assert len(data) == 3 * sum(count for _, count in plan)
    # The control rows' bytes, read where their records point, are the prng stream.
    control = b"".join(
        data[r["bytes_offset"] : r["bytes_offset"] + r["sample_count"]]
        for r in records
        if r["arm"] == "control"
    )
    assert control == documented_stream(9, 3 * (300 + 700))
    for record in records:
        start = record["bytes_offset"]
        chunk = data[start : start + record["sample_count"]]
        assert record["entropy_sha256"] == sha256_hex(chunk)


def test_strict_mode_ends_only_the_requests_of_the_arm_whose_source_is_down(
    tmp_path: Path, install_plugin: InstallPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    install_plugin("down", "unavailable")
    archive = tmp_path / "bytes.bin"
    sampler = arm_sampler(
        tmp_path,
        arms="device=down,control=prng",
        fallback_mode="error",
        strict_wait_s=0,
        bytes_path=str(archive),
    )
    sampler.end_token_id = 2
    for slot, arm in enumerate(["device", "control", "device"]):
        sampler.admit(slot, sampler.resolve({"qr_arm": arm, "qr_sample_count": COUNT}), [])
    logits = torch.randn(3, 40)
    with caplog.at_level(logging.ERROR, logger="qr_sampler"):
        sampler.sample(logits, np.arange(3))
    sampler.close()

    forced = (logits == 0).int().argmax(-1).tolist()
    assert forced[0] == forced[2] == 2
    assert "strict mode: ended 2 request(s) of arm 'device'" in caplog.text
    log = Path(sampler.config.log_path)
    records = sorted(
        (json.loads(line) for line in log.read_text().splitlines()), key=lambda r: r["row"]
    )
    assert [(r["row"], r["arm"], r["entropy_source"]) for r in records] == [
        (0, "device", "none"),
        (1, "control", "prng"),
        (2, "device", "none"),
    ]
    assert [r["end_reason"] is not None for r in records] == [True, False, True]
    assert "connection refused by 10.0.0.9:50051" in str(records[0]["end_reason"])
    assert records[1]["token_id"] == forced[1]
    assert records[1]["u"] is not None
    # Only the control arm's bytes were drawn and archived, and they check out.
    assert archive.stat().st_size == COUNT
    report = verify(str(log), str(archive))
    assert (report.checked, report.ended, report.mismatches) == (1, 2, [])


@pytest.mark.parametrize("dp_rank", [0, 1])
def test_arms_and_engines_sharing_a_prng_seed_draw_streams_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dp_rank: int
) -> None:
    """Two prng arms of one QR_PRNG_SEED, in engine 0 and in data-parallel engine 1:
    no two draw the same bytes, and each record's prng_seed reproduces its own."""
    monkeypatch.setenv("QR_PRNG_SEED", "9")
    log, archive = tmp_path / "tokens.jsonl", tmp_path / "bytes.bin"
    config = QRSamplerConfig.load(
        env_file=str(tmp_path / "absent.env"),
        arms="first=prng,second=prng",
        log_path=str(log),
        bytes_path=str(archive),
    )
    sampler = QRSampler(config, dp_rank=dp_rank)
    for slot, arm in enumerate(["first", "second"]):
        sampler.admit(slot, sampler.resolve({"qr_arm": arm, "qr_sample_count": COUNT}), [])
    for _ in range(2):
        sampler.sample(torch.randn(2, 40), np.arange(2))
    sampler.close()
    suffix = f".dp{dp_rank}" if dp_rank else ""
    lines = Path(f"{tmp_path}/tokens{suffix}.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    data = Path(f"{tmp_path}/bytes{suffix}.bin").read_bytes()
    streams = {}
    for arm in ("first", "second"):
        mine = [r for r in records if r["arm"] == arm]
        (seed,) = {r["prng_seed"] for r in mine}
        drawn = b"".join(data[r["bytes_offset"] : r["bytes_offset"] + COUNT] for r in mine)
        assert drawn == documented_stream(seed, 2 * COUNT)
        streams[arm] = (seed, drawn)
    assert streams["first"][1] != streams["second"][1]
    # Engine 0's first arm keeps QR_PRNG_SEED itself, as a single-arm run would.
    assert (streams["first"][0] == 9) is (dp_rank == 0)
    assert streams["second"][0] != 9
