"""NIST SP 800-90B 4.4 health tests on every byte a source delivers."""

from __future__ import annotations

import itertools
import logging
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from qr_sampler import EntropySource, FallbackEntropySource
from qr_sampler.entropy.base import check_byte_count
from qr_sampler.entropy.factory import build_entropy_source
from qr_sampler.entropy.health import (
    HealthCutoffs,
    HealthTests,
    proportion_cutoff,
    repetition_cutoff,
)
from qr_sampler.entropy.system import SystemEntropySource
from qr_sampler.errors import EntropyUnavailableError, HealthTestError
from qr_sampler.settings.config import QRSamplerConfig


class StuckSource(EntropySource):
    """A device whose output froze on one value after ``good`` bytes."""

    name = "stuck"

    def __init__(self, good: int = 0, value: int = 0x5A) -> None:
        self.good, self.value = good, value

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        fresh = os.urandom(min(n, self.good))
        self.good -= len(fresh)
        return fresh + bytes([self.value]) * (n - len(fresh))


class BiasedSource(EntropySource):
    """Uniform bytes, except that one value turns up with probability ``share``."""

    name = "biased"

    def __init__(self, share: float, value: int = 0x41, seed: int = 7) -> None:
        self.share, self.value = share, value
        self.rng = np.random.default_rng(seed)

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        data = self.rng.integers(0, 256, n, dtype=np.uint8)
        data[self.rng.random(n) < self.share] = self.value
        return data.tobytes()


# --- cutoffs ---------------------------------------------------------------------


@pytest.mark.parametrize("min_entropy", [0.5, 1, 2, 4, 6, 7, 7.5, 8])
def test_proportion_cutoff_is_one_more_than_the_binomial_critical_value(min_entropy: float) -> None:
    critical = binom.ppf(1 - 2.0**-30, 512, 2.0**-min_entropy)
    assert proportion_cutoff(min_entropy) == 1 + int(critical)


@pytest.mark.parametrize("min_entropy", [0.5, 1, 3, 7, 7.9, 8])
def test_repetition_cutoff_is_the_shortest_run_at_most_as_likely_as_alpha(
    min_entropy: float,
) -> None:
    cutoff = repetition_cutoff(min_entropy)
    # A run of C repeats the first sample C - 1 times: probability 2^(-H (C - 1)).
    assert min_entropy * (cutoff - 1) >= 30 > min_entropy * (cutoff - 2)


def test_the_defaults_give_the_documented_cutoffs() -> None:
    cutoffs = HealthTests(HealthCutoffs.for_min_entropy(QRSamplerConfig().health_min_entropy))
    summary = cutoffs.summary()
    assert (summary["repetition_cutoff"], summary["proportion_cutoff"]) == (6, 22)
    assert summary["window"] == 512


# --- the tests against a plain per-byte reading of the standard ---------------------


def first_failure(stream: bytes, cutoffs: HealthCutoffs) -> int | None:
    """Index of the byte at which either test first fails, byte by byte as in 4.4."""
    run, last = 0, None
    reference, count = 0, 0
    for i, value in enumerate(stream):
        run = run + 1 if value == last else 1
        last = value
        if run >= cutoffs.repetition:
            return i
        if i % cutoffs.window == 0:
            reference, count = value, 1
        elif value == reference:
            count += 1
        if count >= cutoffs.proportion:
            return i
    return None


SMALL = HealthCutoffs(min_entropy=2, repetition=4, proportion=7, window=16)


@settings(max_examples=300, deadline=None)
@given(
    stream=st.lists(st.integers(0, 3), max_size=300).map(bytes),
    cuts=st.lists(st.integers(0, 300), max_size=8),
)
def test_streaming_in_any_pieces_fails_where_the_byte_by_byte_reading_does(
    stream: bytes, cuts: list[int]
) -> None:
    tests = HealthTests(SMALL)
    failing = first_failure(stream, SMALL)
    bounds = [0, *sorted(c for c in cuts if c <= len(stream)), len(stream)]
    for start, end in itertools.pairwise(bounds):
        if failing is not None and start <= failing < end:
            with pytest.raises(HealthTestError):
                tests.check(stream[start:end])
            return
        tests.check(stream[start:end])
    assert failing is None


DEFAULTS = HealthCutoffs.for_min_entropy(7)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(4096, 30000),
    runs=st.lists(st.tuples(st.integers(0, 30000), st.integers(2, 8)), max_size=6),
    cuts=st.lists(st.integers(0, 30000), max_size=3),
)
def test_long_draws_with_planted_runs_fail_where_the_byte_by_byte_reading_does(
    seed: int, size: int, runs: list[tuple[int, int]], cuts: list[int]
) -> None:
    # Long draws take the filtered path of the repetition test.
    stream = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    for start, length in runs:
        stream[start : start + length] = stream[min(start, size - 1)]
    data = stream.tobytes()
    failing = first_failure(data, DEFAULTS)
    tests = HealthTests(DEFAULTS)
    bounds = [0, *sorted(c for c in cuts if c <= size), size]
    for start, end in itertools.pairwise(bounds):
        if failing is not None and start <= failing < end:
            with pytest.raises(HealthTestError):
                tests.check(data[start:end])
            return
        tests.check(data[start:end])
    assert failing is None


def test_a_run_split_across_draws_is_caught() -> None:
    tests = HealthTests(HealthCutoffs.for_min_entropy(7))
    tests.check(os.urandom(1000) + b"\x33" * 3)
    with pytest.raises(HealthTestError, match=r"repetition count test.* 6 identical bytes of 0x33"):
        tests.check(b"\x33" * 3 + os.urandom(1000))


def test_after_a_failure_the_tests_start_afresh() -> None:
    tests = HealthTests(HealthCutoffs.for_min_entropy(7))
    with pytest.raises(HealthTestError):
        tests.check(b"\x00" * 10)
    tests.check(b"\x00" * 5 + os.urandom(2000))
    assert tests.summary()["failures"] == 1


# --- what a source delivers -----------------------------------------------------


def health_tested(primary: EntropySource, strict: bool = False) -> FallbackEntropySource:
    health = HealthTests(HealthCutoffs.for_min_entropy(7))
    return FallbackEntropySource(primary, None if strict else SystemEntropySource(), health)


def test_os_urandom_passes_millions_of_bytes_in_batch_sized_draws() -> None:
    source = health_tested(SystemEntropySource())
    draws = [source.draw(64 * 20480) for _ in range(8)]  # 10.5 MB
    assert not any(draw.fallback for draw in draws)
    assert source.health is not None
    assert source.health.summary()["bytes_tested"] == 8 * 64 * 20480


def test_a_stuck_source_falls_back_flagged_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = health_tested(StuckSource(good=5000))
    first = source.draw(4000)
    with caplog.at_level(logging.WARNING):
        second = source.draw(4000)
    assert (first.source, first.fallback, first.fallback_reason) == ("stuck", False, None)
    assert (second.source, second.fallback, second.fallback_reason) == (
        "system",
        True,
        "health test",
    )
    assert "repetition count test failed" in caplog.text
    assert source.health_check()["health_tests"]["failures"] == 1


def test_a_value_far_too_frequent_fails_the_proportion_test() -> None:
    source = health_tested(BiasedSource(share=1 / 16))
    draw = source.draw(64 * 1024)
    assert (draw.fallback, draw.fallback_reason) == (True, "health test")
    with pytest.raises(HealthTestError, match="adaptive proportion test failed: byte 0x41"):
        health_tested(BiasedSource(share=1 / 16), strict=True).draw(64 * 1024)


def test_strict_mode_refuses_a_draw_that_fails() -> None:
    with pytest.raises(EntropyUnavailableError) as caught:
        health_tested(StuckSource(), strict=True).draw(100)
    assert caught.value.reason == "health test"


def test_health_tests_are_on_by_default_and_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = build_entropy_source(QRSamplerConfig.load())
    assert default.health is not None
    assert default.health.cutoffs == HealthCutoffs.for_min_entropy(7.0)
    monkeypatch.setenv("QR_HEALTH_TESTS", "off")
    assert build_entropy_source(QRSamplerConfig.load()).health is None


def test_min_entropy_sets_the_cutoffs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_HEALTH_MIN_ENTROPY", "4")
    health = build_entropy_source(QRSamplerConfig.load()).health
    assert health is not None
    assert (health.cutoffs.repetition, health.cutoffs.proportion) == (
        1 + math.ceil(30 / 4),
        proportion_cutoff(4),
    )


@pytest.mark.parametrize("value", ["0", "8.5", "-1"])
def test_an_impossible_min_entropy_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_HEALTH_MIN_ENTROPY", value)
    with pytest.raises(ValueError, match="QR_HEALTH_MIN_ENTROPY"):
        QRSamplerConfig.load()
