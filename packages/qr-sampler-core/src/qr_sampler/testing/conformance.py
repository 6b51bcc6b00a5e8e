"""``EntropySourceConformance``: the checks every entropy source must pass.

A source author subclasses it in a test module and provides a ``source`` fixture;
pytest then runs each check against that source::

    class TestAcmeSource(EntropySourceConformance):
        @pytest.fixture
        def source(self) -> Iterator[EntropySource]:
            with AcmeEntropySource(AcmeSettings(address="127.0.0.1:9000")) as source:
                yield source

Optional fixtures: ``unavailable_source`` (a source whose backend is down; without
it that check is skipped with a reason) and ``secrets`` (values that must never be
shown). Class attributes size the checks for slow hardware.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from qr_sampler.entropy.amplification import ZScoreMeanAmplifier
from qr_sampler.entropy.base import EntropySource
from qr_sampler.errors import EntropyUnavailableError
from qr_sampler.experiments.uniformity import StatisticResult, byte_chi_square, uniform_ks
from qr_sampler.settings.base import QRSettings
from qr_sampler.settings.config import SamplingOptions

# Shorter secret values are not searched for: they would turn up in health
# output by coincidence (a 4-digit PIN inside a latency figure).
MIN_SECRET_LENGTH = 6


class EntropySourceConformance:
    """Subclass as ``Test<YourSource>`` and override the ``source`` fixture.

    The ``source`` fixture must be function-scoped: one check closes its source.
    """

    #: Draw sizes that must come back exact: odd sizes, one token's worth, and
    #: sizes that straddle the 64 KiB chunks many transports use.
    sizes: ClassVar[tuple[int, ...]] = (1, 2, 3, 31, 64, 1000, 4096, 20480, 65535, 65537)
    #: A whole engine step at batch 256 and the default sample_count: larger than
    #: gRPC's default 4 MiB message limit, so a source that forgets to chunk fails.
    large_draw_bytes: ClassVar[int] = 256 * 20480
    threads: ClassVar[int] = 8
    draws_per_thread: ClassVar[int] = 25
    thread_draw_bytes: ClassVar[int] = 512
    #: Longest the threads check waits for its threads, and the outage check for its error.
    timeout_s: ClassVar[float] = 60.0
    #: Byte-value chi-square sample: 4,096 expected per value, so byte frequencies
    #: off by about 1.5% fail with near certainty at the threshold below.
    chi_square_bytes: ClassVar[int] = 1 << 20
    #: The KS check amplifies this many rows of this many bytes into u values the
    #: way the sampler does; 1,024-byte rows keep the normal approximation of the
    #: mean exact to far below the KS resolution at 2,000 values (about 0.03).
    ks_rows: ClassVar[int] = 2000
    ks_row_bytes: ClassVar[int] = 1024
    #: Bytes per draw while collecting the statistical samples.
    statistics_draw_bytes: ClassVar[int] = 1 << 16
    #: A good source fails a statistical check with this probability. The suite
    #: runs on every commit of every source package, so one false alarm in a
    #: million runs per check; the sample sizes above keep real defects far
    #: below it (byte frequencies off by 1.5%, neighbouring bytes correlated).
    alpha: ClassVar[float] = 1e-6

    @pytest.fixture
    def source(self) -> EntropySource:
        pytest.fail(
            f"{type(self).__name__} must override the `source` fixture to build the "
            "entropy source under test"
        )

    @pytest.fixture
    def unavailable_source(self) -> EntropySource:
        pytest.skip(
            "no `unavailable_source` fixture: override it to return a source whose "
            "backend is down (for example, pointed at an address where nothing listens)"
        )

    @pytest.fixture
    def secrets(self) -> Iterable[str]:
        """Values never to be shown, besides the secret fields of the source's settings."""
        return ()

    # --- sizes --------------------------------------------------------------------

    def test_is_an_entropy_source(self, source: EntropySource) -> None:
        assert isinstance(source, EntropySource), (
            f"{type(source).__name__} does not subclass qr_sampler.EntropySource"
        )
        assert isinstance(source.name, str), "`name` must be a str"
        assert source.name, "`name` must be the non-empty name the source is registered under"

    def test_zero_bytes_is_empty(self, source: EntropySource) -> None:
        data = source.get_random_bytes(0)
        _assert_exact(data, 0)

    def test_negative_count_is_value_error(self, source: EntropySource) -> None:
        try:
            source.get_random_bytes(-1)
        except ValueError:
            return
        raise AssertionError("get_random_bytes(-1) must raise ValueError")

    def test_exact_sizes(self, source: EntropySource) -> None:
        for n in self.sizes:
            _assert_exact(source.get_random_bytes(n), n)

    def test_large_draw(self, source: EntropySource) -> None:
        _assert_exact(source.get_random_bytes(self.large_draw_bytes), self.large_draw_bytes)

    def test_draws_differ(self, source: EntropySource) -> None:
        first, second = source.get_random_bytes(64), source.get_random_bytes(64)
        assert first != second, "two draws returned the same 64 bytes"

    # --- failure, health and lifecycle ------------------------------------------------

    def test_unavailable_source_raises_entropy_unavailable_error(
        self, unavailable_source: EntropySource, secrets: Iterable[str]
    ) -> None:
        start = time.monotonic()
        try:
            unavailable_source.get_random_bytes(64)
        except EntropyUnavailableError as exc:
            error = exc
        except Exception as exc:
            raise AssertionError(
                f"a source that cannot deliver raised {type(exc).__name__}: {exc}; it must "
                "raise EntropyUnavailableError, the only error the fallback catches"
            ) from exc
        else:
            raise AssertionError("unavailable_source delivered bytes instead of failing")
        elapsed = time.monotonic() - start
        assert str(error).strip(), "EntropyUnavailableError without a message: say what failed"
        assert elapsed <= self.timeout_s, f"reporting the outage took {elapsed:.1f} s"
        _assert_hides(str(error), _secrets_of(unavailable_source, secrets), "the error message")
        _assert_health(unavailable_source.health_check())

    def test_health_check_is_json_without_secrets(
        self, source: EntropySource, secrets: Iterable[str]
    ) -> None:
        source.get_random_bytes(64)  # some sources only fill in their health after a draw
        health = source.health_check()
        _assert_health(health)
        hidden = _secrets_of(source, secrets)
        _assert_hides(json.dumps(health), hidden, "health_check()")
        _assert_hides(repr(source), hidden, "repr(source)")

    def test_close_is_idempotent(self, source: EntropySource) -> None:
        source.get_random_bytes(64)
        source.close()
        try:
            source.close()
        except Exception as exc:
            raise AssertionError(
                f"a second close() raised {type(exc).__name__}: {exc}; close() must be "
                "safe to call more than once"
            ) from exc
        # The contract holds after close too: bytes, or the error the fallback handles.
        try:
            data = source.get_random_bytes(16)
        except EntropyUnavailableError:
            return
        except Exception as exc:
            raise AssertionError(
                f"a draw after close() raised {type(exc).__name__}: {exc}; "
                "raise EntropyUnavailableError instead"
            ) from exc
        _assert_exact(data, 16)

    def test_concurrent_draws(self, source: EntropySource) -> None:
        draws: list[bytes] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(self.threads)

        def draw() -> None:
            try:
                start.wait(self.timeout_s)  # every thread asks at once
                for _ in range(self.draws_per_thread):
                    data = source.get_random_bytes(self.thread_draw_bytes)
                    with lock:
                        draws.append(data)
            except BaseException as exc:  # reported below, on the test's thread
                with lock:
                    errors.append(exc)

        workers = [threading.Thread(target=draw, daemon=True) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + self.timeout_s
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        assert not any(w.is_alive() for w in workers), (
            f"concurrent draws did not finish within {self.timeout_s} s (a deadlock?)"
        )
        assert not errors, f"concurrent draws raised {errors[0]!r}"
        for data in draws:
            _assert_exact(data, self.thread_draw_bytes)
        # A shared buffer read without a lock hands the same bytes to two threads.
        assert len(set(draws)) == len(draws), "concurrent draws returned the same bytes twice"

    # --- statistics ---------------------------------------------------------------

    def test_byte_values_are_uniform(self, source: EntropySource) -> None:
        data = self._sample(source, self.chi_square_bytes)
        result = byte_chi_square(data)
        counts = np.bincount(data, minlength=256)
        self._assert_plausible(
            result,
            "byte-value chi-square",
            f"byte values are not uniform: 0x{counts.argmax():02x} came {counts.max()} "
            f"times and 0x{counts.argmin():02x} {counts.min()} times, "
            f"{data.size / 256:.0f} expected",
        )

    def test_amplified_u_is_uniform(self, source: EntropySource) -> None:
        data = self._sample(source, self.ks_rows * self.ks_row_bytes)
        # The sampler's defaults, so the check sees u exactly as a token draw would.
        names = ("population_mean", "population_std", "uniform_clamp_epsilon")
        defaults = SamplingOptions.model_fields
        params = {name: np.full(self.ks_rows, defaults[name].default) for name in names}
        amplified = ZScoreMeanAmplifier().amplify(
            data,
            np.arange(self.ks_rows, dtype=np.int64) * self.ks_row_bytes,
            np.full(self.ks_rows, self.ks_row_bytes, dtype=np.int64),
            params,
        )
        self._assert_plausible(
            uniform_ks(amplified.u),
            "KS test of the amplified u",
            "the means of the bytes are not distributed as for independent uniform bytes "
            f"(mean z = {amplified.z_score.mean():.3f}, std z = {amplified.z_score.std():.3f}, "
            "expected 0 and 1): the bytes are biased or correlated",
        )

    def _sample(self, source: EntropySource, total: int) -> npt.NDArray[np.uint8]:
        pieces = []
        remaining = total
        while remaining:
            pieces.append(source.get_random_bytes(min(remaining, self.statistics_draw_bytes)))
            remaining -= len(pieces[-1])
        return np.frombuffer(b"".join(pieces), dtype=np.uint8)

    def _assert_plausible(self, result: StatisticResult, test: str, meaning: str) -> None:
        assert result.p_value > self.alpha, (
            f"{test}: p = {result.p_value:.3g} (statistic {result.statistic:.4g}) is below "
            f"{self.alpha:g}; {meaning}"
        )


def _assert_exact(data: object, n: int) -> None:
    assert isinstance(data, bytes), f"asked for {n} bytes, got {type(data).__name__}, not bytes"
    assert len(data) == n, f"asked for {n} bytes, got {len(data)}"


def _assert_health(health: object) -> None:
    assert isinstance(health, dict), f"health_check() returned {type(health).__name__}, not dict"
    try:
        json.dumps(health, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"health_check() is not JSON-serialisable: {exc}") from None


def _secrets_of(source: EntropySource, declared: Iterable[str]) -> list[str]:
    """The declared secrets plus every set secret field of settings the source holds."""
    found = [str(value) for value in declared]
    for attribute in getattr(source, "__dict__", {}).values():
        if isinstance(attribute, QRSettings):
            found += [str(getattr(attribute, name)) for name in attribute.secret_fields]
    return [value for value in found if len(value) >= MIN_SECRET_LENGTH]


def _assert_hides(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{where} shows a secret ({len(secret)} characters)"
