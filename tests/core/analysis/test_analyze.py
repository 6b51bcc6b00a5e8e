"""``qr-sampler analyze`` on synthetic records with known answers, and on records the
real sampler writes."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from scipy import stats

from qr_sampler.analysis import statistics
from qr_sampler.analysis.collect import collect
from qr_sampler.cli.main import main
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import QRSamplerConfig

N = 20_000  # tokens per group


def synthetic(path: Path, groups: dict[str, float], seed: int, per_step: int = 4) -> None:
    """Records whose z is N(shift, 1) per group and u = Phi(z), interleaved by step
    as a batch of ``per_step`` requests would write them."""
    rng = np.random.default_rng(seed)
    lines = []
    for name, shift in groups.items():
        z = rng.standard_normal(N) + shift
        u = stats.norm.cdf(z)
        ranks = rng.geometric(0.5, N) - 1
        for i in range(N):
            lines.append(
                {
                    "step": i // per_step,
                    "u": float(u[i]),
                    "z_score": float(z[i]),
                    "token_rank": int(ranks[i]),
                    "token_prob": 0.25,
                    "entropy_source": "system" if name != "b" else "quantum_grpc",
                    "fallback": i % 1000 == 0,
                    "fetch_ms": 1.0 + (i // per_step) % 10,
                    "request_id": f"{name}-{i // 100}",
                    "tag": name,
                }
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def analyse(path: Path, by: str | None = "tag") -> dict:
    return statistics.analyse(collect([str(path)], by), statistics.DEFAULT_MARGIN, 0.01)


def test_a_seeded_null_run_is_not_flagged_and_null_groups_are_equivalent(tmp_path):
    path = tmp_path / "null.jsonl"
    synthetic(path, {"a": 0.0, "b": 0.0}, seed=11)
    summary = analyse(path)
    assert summary["tokens"] == 2 * N
    assert summary["requests"] == 2 * N // 100
    assert summary["steps"] == 2 * N // 4
    assert summary["fallback_tokens"] == 40
    assert summary["entropy_sources"] == {"system": N, "quantum_grpc": N}
    assert not summary["overall"]["uniformity"]["flagged"]
    assert not any(g["uniformity"]["flagged"] for g in summary["groups"].values())
    (pair,) = summary["pairs"]
    assert not pair["flagged"]
    # Standard error of the difference is sqrt(2 / N) = 0.01, a tenth of the margin.
    assert pair["tost_z"]["equivalent"]
    assert pair["tost_z"]["p"] < 1e-6
    assert summary["overall"]["mean_token_prob"] == 0.25
    assert summary["overall"]["mean_surprisal_bits"] == 2.0
    assert summary["fetch_latency"]["system"]["p50_ms"] == pytest.approx(5.5, abs=0.5)


def test_a_small_known_shift_is_detected(tmp_path):
    path = tmp_path / "shift.jsonl"
    shift = 0.06  # six standard errors of the difference at this n
    synthetic(path, {"a": 0.0, "b": shift}, seed=12)
    summary = analyse(path)
    (pair,) = summary["pairs"]
    assert pair["flagged"]
    welch = pair["welch_t_z"]
    assert welch["p"] < 1e-3
    assert welch["mean_difference"] == pytest.approx(-shift, abs=4 * math.sqrt(2 / N))
    assert welch["cohens_d"] == pytest.approx(-shift, abs=4 * math.sqrt(2 / N))
    assert pair["mann_whitney_z"]["p"] < 1e-3
    assert pair["mann_whitney_z"]["rank_biserial"] < 0
    assert pair["ks_u"]["p"] < 0.01
    # A shift of 0.06 is inside the 0.1 margin: equivalence is still what TOST shows...
    assert pair["tost_z"]["equivalent"]
    # ...but not at a margin below the shift.
    strict = statistics.analyse(collect([str(path)], "tag"), 0.03, 0.01)
    assert not strict["pairs"][0]["tost_z"]["equivalent"]
    assert summary["groups"]["b"]["uniformity"]["flagged"]


def test_the_command_writes_a_self_contained_report_and_strict_json(tmp_path, capsys):
    path = tmp_path / "null.jsonl"
    synthetic(path, {"a": 0.0, "b": 0.0}, seed=13)
    with path.open("a") as extra:
        extra.write("not json\n\n[1]\n")
    out = tmp_path / "report"
    assert main(["analyze", str(path), "--by", "tag", "--out", str(out), "--margin", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "tokens 40000, requests 400, steps 10000" in printed
    assert "a vs b: KS(u)" in printed
    assert "TOST(+-0.2) p=" in printed
    assert "fetch latency system: p50" in printed
    summary = json.loads((out / "summary.json").read_text(), parse_constant=pytest.fail)
    assert summary["skipped_lines"] == 2
    page = (out / "report.html").read_text()
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) == 6
    for image in images:
        assert base64.b64decode(image.split('"')[0]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http" not in page  # nothing fetched from anywhere


def test_analyze_without_the_extra_names_it(tmp_path, monkeypatch, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"u": 0.5}) + "\n")
    for name in [m for m in sys.modules if m.startswith(("scipy", "qr_sampler.analysis"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "scipy", None)
    assert main(["analyze", str(path)]) == 2
    assert "pip install 'qr-sampler-core[analysis]'" in capsys.readouterr().err


def test_analyze_refuses_bad_options_and_empty_input(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["analyze", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no token records" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["analyze", str(empty), "--alpha", "2"]) == 2


def test_records_written_by_the_real_sampler(tmp_path, capsys):
    log = tmp_path / "tokens.jsonl"
    config = QRSamplerConfig.load(env_file=str(tmp_path / "absent.env"), log_path=str(log))
    sampler = QRSampler(config)
    for slot, tag in enumerate(("x", "y")):
        sampler.admit(slot, sampler.resolve({"qr_tag": tag, "qr_sample_count": 256}))
    generator = torch.Generator().manual_seed(5)
    for _ in range(150):
        sampler.sample(torch.randn(2, 100, generator=generator) * 2, np.arange(2))
    sampler.close()
    out = tmp_path / "out"
    assert main(["analyze", str(log), "--by", "tag", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tokens 300, requests 2, steps 150; fallback tokens 0 (0.00%)" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"]["x"]["tokens"] == 150
    assert sum(summary["overall"]["rank_counts"]) == 300
    assert 0 < summary["overall"]["mean_token_prob"] < 1


def two_arm_records(path: Path) -> tuple[int, int]:
    """Records of a two-arm batch as the sampler writes them: each step draws once per arm
    (its fetch_ms on every record of that arm). Returns the draws from system and prng."""
    lines = []
    system = prng = 0
    z = np.random.default_rng(21).standard_normal(400)
    for step in range(1, 101):
        for row in range(4):
            arm = ("qrng", "control")[row % 2]
            source = "prng" if arm == "control" else "system"
            lines.append(
                {
                    "step": step,
                    "row": row,
                    "u": float(stats.norm.cdf(z[step * 4 + row - 4])),
                    "z_score": float(z[step * 4 + row - 4]),
                    "arm": arm,
                    "entropy_source": source,
                    "fallback": False,
                    # Distinct per arm, so a draw credited to the wrong source shows.
                    "fetch_ms": 9.0 if arm == "qrng" else 1.0,
                    "config_hash": "abc123",
                }
            )
        system, prng = system + 1, prng + 1
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return system, prng


def test_fetch_latency_counts_each_arms_draw_once_per_source_and_per_arm(tmp_path):
    path = tmp_path / "arms.jsonl"
    system, prng = two_arm_records(path)
    summary = analyse(path, by="arm")
    assert summary["steps"] == 100
    latency = summary["fetch_latency"]
    assert (latency["system"]["draws"], latency["prng"]["draws"]) == (system, prng)
    assert latency["system"]["p50_ms"] == 9.0
    assert latency["prng"]["p99_ms"] == 1.0
    by_arm = summary["fetch_latency_by_arm"]
    assert by_arm["qrng"] == {"system": latency["system"]}
    assert by_arm["control"] == {"prng": latency["prng"]}


def test_records_without_arms_count_one_draw_per_step(tmp_path):
    path = tmp_path / "plain.jsonl"
    synthetic(path, {"a": 0.0}, seed=3)
    latency = analyse(path, by=None)["fetch_latency"]
    assert latency["system"]["draws"] == N // 4


def test_grouping_by_a_field_no_record_has_is_an_error_with_a_did_you_mean(tmp_path, capsys):
    path = tmp_path / "arms.jsonl"
    two_arm_records(path)
    out = tmp_path / "out"
    assert main(["analyze", str(path), "--by", "arms", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--by arms: no record has this field; did you mean 'arm'?" in err
    assert "(the records' fields: arm, config_hash, entropy_source," in err
    assert not out.exists()
    # A field some records have with no value is a group, not an error.
    with path.open("a") as more:
        more.write(json.dumps({"step": 101, "u": 0.5, "tag": None}) + "\n")
    assert main(["analyze", str(path), "--by", "tag", "--out", str(out)]) == 0
    assert "tag=(none): n=401" in capsys.readouterr().out


def test_summary_and_report_say_what_they_report_on(tmp_path, capsys):
    first, second = tmp_path / "run-1.jsonl", tmp_path / "run-2.jsonl"
    two_arm_records(first)
    synthetic(second, {"a": 0.0}, seed=4)
    with second.open("a") as more:
        # A run manifest line (no token): what the run says about itself is reported.
        more.write(json.dumps({"model": "org/tiny", "vllm_version": "0.32.0"}) + "\n")
    out = tmp_path / "out"
    assert main(["analyze", str(first), str(second), "--out", str(out)]) == 0
    facts = json.loads((out / "summary.json").read_text())["provenance"]
    assert [f["path"] for f in facts["files"]] == [str(first), str(second)]
    assert [f["records"] for f in facts["files"]] == [400, N]
    assert facts["files"][1]["skipped_lines"] == 1
    assert facts["files"][0]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert facts["files"][0]["size_bytes"] == first.stat().st_size
    assert facts["files"][0]["arms"] == {"qrng": 200, "control": 200}
    assert facts["files"][0]["modified"].endswith("+00:00")
    assert facts["config_hashes"] == {"None": N, "abc123": 400}
    assert facts["run"]["model"] == "org/tiny"
    assert facts["run"]["vllm_version"] == "0.32.0"
    assert facts["run"]["qr_sampler_version"] is None
    assert facts["analyzed_with"]["qr_sampler_core"]
    assert facts["integrity"].startswith("not checked")
    page = (out / "report.html").read_text()
    header = page[: page.index("<pre>")]
    for shown in (str(first), facts["files"][0]["sha256"], "org/tiny", "abc123 (400 records)"):
        assert shown in header


CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
WIDTH, HEIGHT = 1400, 4200


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="rendering report.html needs headless Chromium (Debian: apt-get install chromium)",
)
def test_the_report_reads_full_width_in_a_browser(tmp_path):
    path = tmp_path / "arms.jsonl"
    two_arm_records(path)
    out = tmp_path / "out"
    assert main(["analyze", str(path), "--by", "arm", "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert page.index("<table class='facts'>") < page.index("<figure>")
    assert "<h2>QQ residuals with a 95% band</h2>" in page
    assert page.count("<figcaption>") == 6
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",  # tests may run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--screenshot={screenshot}",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=90,
        check=True,
    )
    image = plt.imread(screenshot)[..., :3]
    assert image.shape[:2] == (HEIGHT, WIDTH)
    ink = (image < 0.85).any(axis=2)
    # The provenance header is the first thing on the page.
    assert ink[: HEIGHT // 20].any()
    # Below the tables the figures span the page, not half of it.
    columns = np.flatnonzero(ink[HEIGHT // 4 :].any(axis=0))
    assert columns[0] < 0.05 * WIDTH
    assert columns[-1] > 0.95 * WIDTH


def test_greedy_tokens_are_counted_apart_from_the_statistics_of_u(tmp_path, capsys):
    log = tmp_path / "r.jsonl"
    config = QRSamplerConfig.load(env_file=str(tmp_path / "absent.env"), log_path=str(log))
    sampler = QRSampler(config)
    sampler.admit(0, sampler.resolve({}, {"fixed_temperature": 0.0}))
    sampler.admit(1, sampler.resolve({}, {"fixed_temperature": 1.0}))
    for _ in range(50):
        sampler.sample(torch.randn(2, 30), np.arange(2))
    sampler.close()
    summary = analyse(log, by=None)
    assert (summary["tokens"], summary["greedy_tokens"], summary["skipped_lines"]) == (50, 50, 0)
    assert main(["analyze", str(log), "--out", str(tmp_path / "out")]) == 0
    assert "greedy tokens (no bytes, not in the statistics) 50" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_groups_whose_z_never_varies_are_compared_without_dividing_by_zero():
    """Neither group varies (a stuck amplifier, a hand-made file): Welch's t has no
    spread to divide by, and TOST decides on the exact difference."""
    u = np.full(50, 0.5)
    same = statistics.compare(u, np.zeros(50), u, np.zeros(50), 0.1, 0.01)
    assert same["tost_z"] == {"margin": 0.1, "p": 0.0, "equivalent": True}
    assert not same["flagged"]
    apart = statistics.compare(u, np.zeros(50), u, np.ones(50), 0.1, 0.01)
    assert apart["tost_z"]["equivalent"] is False
    assert apart["welch_t_z"]["mean_difference"] == -1.0
    assert apart["flagged"]  # by Mann-Whitney: every z of b is larger
    json.dumps(apart, allow_nan=True)
