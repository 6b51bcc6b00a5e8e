"""``qr_sampler.testing``: core's ``system`` source passes the suite; broken sources fail it."""

from __future__ import annotations

import math
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest
from pydantic_settings import SettingsConfigDict

from qr_sampler import EntropySource, EntropyUnavailableError, QRSettings, SystemEntropySource
from qr_sampler.entropy.base import check_byte_count
from qr_sampler.testing import EntropySourceConformance

pytest_plugins = ["pytester"]

SECRET = "sk-live-0123456789abcdef"
CHECKS = 12


class TestSystemSource(EntropySourceConformance):
    """Core's own source, held to the contract third parties are held to."""

    @pytest.fixture
    def source(self) -> Iterator[EntropySource]:
        with SystemEntropySource() as source:
            yield source


# --- sources that break one part of the contract each ----------------------------------


class UrandomSource(EntropySource):
    """A correct source for the checks that take a second, broken one."""

    name = "urandom"

    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        return os.urandom(n)


class ShortSource(UrandomSource):
    """One byte short on draws over 1,000 bytes, as a transport that drops a tail would be."""

    def get_random_bytes(self, n: int) -> bytes:
        data = super().get_random_bytes(n)
        return data[:-1] if n > 1000 else data


class BytearraySource(UrandomSource):
    def get_random_bytes(self, n: int) -> bytes:
        return bytearray(super().get_random_bytes(n))  # type: ignore[return-value]


class LenientSource(UrandomSource):
    def get_random_bytes(self, n: int) -> bytes:
        return os.urandom(max(n, 0))


class PaddedZeroSource(UrandomSource):
    def get_random_bytes(self, n: int) -> bytes:
        return super().get_random_bytes(n) or b"\x00"


class ConstantSource(UrandomSource):
    def get_random_bytes(self, n: int) -> bytes:
        check_byte_count(n)
        return bytes(range(256)) * (n // 256) + bytes(range(n % 256))


class SeededSource(UrandomSource):
    """Reproducible bytes, so that the check these sources are meant to pass cannot flake."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(2024)

    def get_random_bytes(self, n: int) -> bytes:
        return self.rng.bytes(n)


class CappedSource(SeededSource):
    """Never emits 0xff: a 1/256 bias in one byte value, invisible in the mean."""

    def get_random_bytes(self, n: int) -> bytes:
        data = np.frombuffer(super().get_random_bytes(n), dtype=np.uint8)
        return np.minimum(data, 254).tobytes()


class AntitheticSource(SeededSource):
    """Every byte b is followed by 255 - b: uniform byte values, but every mean is 127.5."""

    def get_random_bytes(self, n: int) -> bytes:
        half = np.frombuffer(super().get_random_bytes(math.ceil(n / 2)), dtype=np.uint8)
        return np.column_stack([half, 255 - half]).ravel()[:n].tobytes()


class VaultSettings(QRSettings):
    model_config = SettingsConfigDict(env_prefix="QR_VAULT_")
    secret_fields: ClassVar[frozenset[str]] = frozenset({"api_key"})
    api_key: str = ""


class LeakyHealthSource(UrandomSource):
    def __init__(self) -> None:
        self.settings = VaultSettings(api_key=SECRET)

    def health_check(self) -> dict[str, Any]:
        return {"source": self.name, "key": self.settings.api_key}


class LeakyReprSource(UrandomSource):
    def __repr__(self) -> str:
        return f"LeakyReprSource(key={SECRET!r})"


class BadHealthSource(UrandomSource):
    def __init__(self, health: object) -> None:
        self.health = health

    def health_check(self) -> Any:
        return self.health


class CloseOnceSource(UrandomSource):
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        if self.closed:
            raise RuntimeError("already closed")
        self.closed = True


class CrashAfterCloseSource(CloseOnceSource):
    def close(self) -> None:
        self.closed = True

    def get_random_bytes(self, n: int) -> bytes:
        if self.closed:
            raise AttributeError("'NoneType' object has no attribute 'read'")
        return super().get_random_bytes(n)


class UnavailableAfterCloseSource(CrashAfterCloseSource):
    def get_random_bytes(self, n: int) -> bytes:
        if self.closed:
            raise EntropyUnavailableError("closed")
        return super().get_random_bytes(n)


class DownSource(UrandomSource):
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.settings = VaultSettings(api_key=SECRET)

    def get_random_bytes(self, n: int) -> bytes:
        raise self.error


class RacySource(UrandomSource):
    """Hands out slices of one pool with an unlocked read-modify-write of the position."""

    def __init__(self) -> None:
        self.pool = os.urandom(1 << 22)
        self.position = 0

    def get_random_bytes(self, n: int) -> bytes:
        start = self.position
        time.sleep(0.002)  # the window in which another thread reads the same position
        self.position = start + n
        return self.pool[start : start + n]


class ThreadHostileSource(UrandomSource):
    def __init__(self) -> None:
        self.owner = threading.get_ident()

    def get_random_bytes(self, n: int) -> bytes:
        if threading.get_ident() != self.owner:
            raise RuntimeError("used from another thread")
        return super().get_random_bytes(n)


class StuckSource(UrandomSource):
    def __init__(self) -> None:
        self.release = threading.Event()

    def get_random_bytes(self, n: int) -> bytes:
        self.release.wait()
        return super().get_random_bytes(n)


SUITE = EntropySourceConformance()


def test_the_statistical_checks_pass_a_good_source() -> None:
    SUITE.test_byte_values_are_uniform(UrandomSource())
    SUITE.test_amplified_u_is_uniform(UrandomSource())


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (ShortSource(), "asked for 4096 bytes, got 4095"),
        (BytearraySource(), "got bytearray, not bytes"),
    ],
)
def test_exact_sizes_fails_a_source_that_returns_something_else(
    source: EntropySource, match: str
) -> None:
    with pytest.raises(AssertionError, match=match):
        SUITE.test_exact_sizes(source)


def test_large_draw_fails_a_short_source() -> None:
    with pytest.raises(AssertionError, match=f"got {256 * 20480 - 1}"):
        SUITE.test_large_draw(ShortSource())


def test_zero_bytes_fails_a_source_that_pads() -> None:
    with pytest.raises(AssertionError, match="asked for 0 bytes, got 1"):
        SUITE.test_zero_bytes_is_empty(PaddedZeroSource())


def test_negative_count_fails_a_lenient_source() -> None:
    with pytest.raises(AssertionError, match="must raise ValueError"):
        SUITE.test_negative_count_is_value_error(LenientSource())


def test_identity_fails_an_object_that_is_no_source() -> None:
    class Nameless(UrandomSource):
        name = ""

    with pytest.raises(AssertionError, match="non-empty name"):
        SUITE.test_is_an_entropy_source(Nameless())
    with pytest.raises(AssertionError, match="does not subclass"):
        SUITE.test_is_an_entropy_source(object())  # type: ignore[arg-type]


def test_draws_differ_fails_a_repeating_source() -> None:
    with pytest.raises(AssertionError, match="same 64 bytes"):
        SUITE.test_draws_differ(ConstantSource())


def test_chi_square_fails_a_source_missing_one_byte_value() -> None:
    SUITE.test_amplified_u_is_uniform(CappedSource())  # the mean barely moves
    with pytest.raises(AssertionError, match=r"byte-value chi-square: p = .*0xfe came"):
        SUITE.test_byte_values_are_uniform(CappedSource())


def test_ks_fails_correlated_bytes_that_chi_square_cannot_see() -> None:
    SUITE.test_byte_values_are_uniform(AntitheticSource())
    with pytest.raises(AssertionError, match=r"KS test of the amplified u.*std z = 0\.000"):
        SUITE.test_amplified_u_is_uniform(AntitheticSource())


def test_ks_fails_a_counter() -> None:
    with pytest.raises(AssertionError, match="biased or correlated"):
        SUITE.test_amplified_u_is_uniform(ConstantSource())


def test_health_check_fails_a_secret_from_the_settings() -> None:
    with pytest.raises(AssertionError, match=r"health_check\(\) shows a secret") as caught:
        SUITE.test_health_check_is_json_without_secrets(LeakyHealthSource(), ())
    assert SECRET not in str(caught.value)  # the failure names the length, not the value


def test_health_check_fails_a_declared_secret_in_repr() -> None:
    SUITE.test_health_check_is_json_without_secrets(LeakyReprSource(), ())
    with pytest.raises(AssertionError, match=r"repr\(source\) shows a secret \(24 characters\)"):
        SUITE.test_health_check_is_json_without_secrets(LeakyReprSource(), [SECRET])


def test_short_secrets_are_not_searched_for() -> None:
    SUITE.test_health_check_is_json_without_secrets(LeakyReprSource(), ["key"])


@pytest.mark.parametrize(
    ("health", "match"),
    [
        (["healthy"], "returned list, not dict"),
        ({"raw": b"\x00"}, "not JSON-serialisable"),
        ({"latency": float("nan")}, "not JSON-serialisable"),
    ],
)
def test_health_check_fails_what_json_cannot_carry(health: object, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        SUITE.test_health_check_is_json_without_secrets(BadHealthSource(health), ())


def test_close_fails_a_second_close_that_raises() -> None:
    with pytest.raises(AssertionError, match=r"second close\(\) raised RuntimeError"):
        SUITE.test_close_is_idempotent(CloseOnceSource())


def test_close_fails_a_draw_after_close_with_a_foreign_error() -> None:
    with pytest.raises(AssertionError, match=r"after close\(\) raised AttributeError"):
        SUITE.test_close_is_idempotent(CrashAfterCloseSource())


def test_close_accepts_unavailable_after_close() -> None:
    SUITE.test_close_is_idempotent(UnavailableAfterCloseSource())


def test_unavailable_passes_a_clear_error() -> None:
    source = DownSource(EntropyUnavailableError("connection refused by 10.0.0.9:50051"))
    SUITE.test_unavailable_source_raises_entropy_unavailable_error(source, ())


@pytest.mark.parametrize(
    ("error", "match"),
    [
        (ConnectionError("refused"), "raised ConnectionError: refused; it must raise"),
        (EntropyUnavailableError(" "), "without a message"),
        (EntropyUnavailableError(f"refused with key {SECRET}"), "error message shows a secret"),
    ],
)
def test_unavailable_fails_an_unclear_error(error: Exception, match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        SUITE.test_unavailable_source_raises_entropy_unavailable_error(DownSource(error), ())


def test_unavailable_fails_a_source_that_delivers() -> None:
    with pytest.raises(AssertionError, match="delivered bytes instead of failing"):
        SUITE.test_unavailable_source_raises_entropy_unavailable_error(UrandomSource(), ())


def test_unavailable_fails_a_slow_report() -> None:
    class Impatient(EntropySourceConformance):
        timeout_s = 0.01

    class SlowDown(UrandomSource):
        def get_random_bytes(self, n: int) -> bytes:
            time.sleep(0.05)
            raise EntropyUnavailableError("timed out")

    with pytest.raises(AssertionError, match="reporting the outage took"):
        Impatient().test_unavailable_source_raises_entropy_unavailable_error(SlowDown(), ())


def test_concurrency_fails_a_racy_source() -> None:
    with pytest.raises(AssertionError, match="same bytes twice"):
        SUITE.test_concurrent_draws(RacySource())


def test_concurrency_fails_a_source_that_raises_on_other_threads() -> None:
    with pytest.raises(AssertionError, match="used from another thread"):
        SUITE.test_concurrent_draws(ThreadHostileSource())


def test_concurrency_fails_a_source_that_hangs() -> None:
    class Impatient(EntropySourceConformance):
        timeout_s = 0.2

    source = StuckSource()
    try:
        with pytest.raises(AssertionError, match=r"did not finish within 0\.2 s"):
            Impatient().test_concurrent_draws(source)
    finally:
        source.release.set()


def test_concurrency_fails_short_concurrent_draws() -> None:
    class Big(EntropySourceConformance):
        thread_draw_bytes = 2000

    with pytest.raises(AssertionError, match="asked for 2000 bytes, got 1999"):
        Big().test_concurrent_draws(ShortSource())


# --- the suite as its users run it: a subclass collected by pytest -----------------------


def test_a_subclass_runs_every_check_and_skips_the_outage_without_a_fixture(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from qr_sampler import SystemEntropySource
            from qr_sampler.testing import EntropySourceConformance

            class TestMine(EntropySourceConformance):
                @pytest.fixture
                def source(self):
                    with SystemEntropySource() as source:
                        yield source
            """
        )
    )
    result = pytester.runpytest_inprocess("-rs")
    result.assert_outcomes(passed=CHECKS - 1, skipped=1)
    result.stdout.fnmatch_lines(["*override it to return a source whose backend is down*"])


def test_a_subclass_with_an_outage_and_secrets_runs_every_check(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            import os
            import pytest
            from qr_sampler import EntropySource, EntropyUnavailableError
            from qr_sampler.testing import EntropySourceConformance

            class Device(EntropySource):
                name = "device"

                def __init__(self, up):
                    self.up = up

                def get_random_bytes(self, n):
                    if n < 0:
                        raise ValueError(f"negative size {n}")
                    if not self.up:
                        raise EntropyUnavailableError("device unplugged")
                    return os.urandom(n)

            class TestDevice(EntropySourceConformance):
                @pytest.fixture
                def source(self):
                    return Device(up=True)

                @pytest.fixture
                def unavailable_source(self):
                    return Device(up=False)

                @pytest.fixture
                def secrets(self):
                    return ["not-in-any-output"]
            """
        )
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=CHECKS)


def test_a_subclass_without_a_source_fixture_says_what_is_missing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        textwrap.dedent(
            """
            from qr_sampler.testing import EntropySourceConformance

            class TestForgotten(EntropySourceConformance):
                pass
            """
        )
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=CHECKS - 1, skipped=1)
    result.stdout.fnmatch_lines(["*TestForgotten must override the `source` fixture*"])
