"""Timing, summaries and run metadata shared by the benchmark scripts."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The committed figures that docs/performance.md quotes. A run writes them only when asked
# (BENCH_UPDATE_RESULTS=1); otherwise to benchmarks/out/ (ignored by git), or BENCH_OUT.
COMMITTED_RESULTS = Path(__file__).resolve().parent / "results"
UPDATE_VARIABLE, OUT_VARIABLE = "BENCH_UPDATE_RESULTS", "BENCH_OUT"


def results_dir() -> Path:
    if os.environ.get(UPDATE_VARIABLE, "").strip().lower() in {"1", "true", "yes"}:
        return COMMITTED_RESULTS
    return Path(os.environ.get(OUT_VARIABLE) or COMMITTED_RESULTS.parent / "out")


RESULTS = results_dir()


def time_pairs_ms(
    first: Callable[[], object],
    second: Callable[[], object],
    count: int,
    warmup: int,
    prepare: Callable[[], object] | None = None,
) -> tuple[list[float], list[float]]:
    """Wall times in ms of ``first`` and ``second``, alternated step by step so that
    a noisy neighbour slows both alike; ``prepare`` runs untimed before each call."""
    first_ms, second_ms = time_interleaved_ms([first, second], count, warmup, prepare)
    return first_ms, second_ms


def time_interleaved_ms(
    runs: list[Callable[[], object]],
    count: int,
    warmup: int,
    prepare: Callable[[], object] | None = None,
) -> list[list[float]]:
    """Wall times in ms of each of ``runs``, taken in turn step by step."""
    timings: list[list[float]] = [[] for _ in runs]
    for index in range(warmup + count):
        for run, samples in zip(runs, timings, strict=True):
            if prepare is not None:
                prepare()
            start = time.perf_counter_ns()
            run()
            if index >= warmup:
                samples.append((time.perf_counter_ns() - start) / 1e6)
    return timings


def time_ms(run: Callable[[], object], count: int, warmup: int) -> list[float]:
    """Wall time of ``run`` in ms, ``count`` times after ``warmup`` untimed runs."""
    return time_pairs_ms(run, lambda: None, count, warmup)[0]


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(samples)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p90_ms": round(percentile(samples, 0.90), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
        "runs": len(samples),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on, so a reader can judge them."""
    versions = {}
    for name in ("torch", "vllm", "numpy", "grpcio", "qr-sampler-core", "qr-source-grpc"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "versions": versions,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    return path
