"""Where a benchmark run writes: never over the committed results unless asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def results_dir(**env: str) -> Path:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    out = subprocess.run(
        [sys.executable, "-c", "import common; print(common.RESULTS)"],
        cwd=BENCHMARKS,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return Path(out.strip())


def test_a_plain_run_writes_to_an_ignored_folder() -> None:
    assert results_dir() == BENCHMARKS / "out"
    ignored = subprocess.run(
        ["git", "-C", str(BENCHMARKS), "check-ignore", "-q", "out/sampler_step.json"],
        check=False,
    )
    assert ignored.returncode == 0


def test_another_folder_can_be_chosen(tmp_path: Path) -> None:
    assert results_dir(BENCH_OUT=str(tmp_path)) == tmp_path


@pytest.mark.parametrize("value", ["1", "true"])
def test_committed_results_change_only_when_asked(value: str) -> None:
    assert results_dir(BENCH_UPDATE_RESULTS=value) == BENCHMARKS / "results"
