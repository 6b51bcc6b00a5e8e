"""The ``system`` source, the fallback wrapper and the factory that builds them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qr_sampler import (
    ConfigValidationError,
    EntropySource,
    EntropyUnavailableError,
    FallbackEntropySource,
    QRSamplerConfig,
    SystemEntropySource,
)
from qr_sampler.entropy.factory import build_entropy_source
from qr_sampler.plugins.registry import load_registry

InstallPlugin = Callable[..., Path]
FALLBACK_LOGGER = "qr_sampler.entropy.fallback"


class ScriptedSource(EntropySource):
    """Stands in for a remote source: each draw follows the next step of a script.

    A step is ``"ok"`` (return ``fill`` bytes), ``"short"`` (one byte too few) or an
    exception instance to raise; the last step repeats.
    """

    def __init__(self, name: str, fill: int, script: list[Any] | None = None) -> None:
        self.name = name
        self.fill = fill
        self.script = list(script or ["ok"])
        self.calls = 0
        self.closed = 0

    def get_random_bytes(self, n: int) -> bytes:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(step, BaseException):
            raise step
        if step == "short":
            return bytes([self.fill]) * (n - 1)
        return bytes([self.fill]) * n

    def health_check(self) -> dict[str, Any]:
        return {"source": self.name, "healthy": True, "calls": self.calls}

    def close(self) -> None:
        self.closed += 1


def outage() -> EntropyUnavailableError:
    return EntropyUnavailableError("server at 10.0.0.115:50051 unreachable")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == FALLBACK_LOGGER and r.levelno >= logging.WARNING
    ]


# --- system source --------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 31, 20480, 1 << 22])
def test_system_source_returns_exactly_n_bytes(n: int) -> None:
    data = SystemEntropySource().get_random_bytes(n)
    assert isinstance(data, bytes)
    assert len(data) == n


def test_system_source_bytes_are_fresh() -> None:
    source = SystemEntropySource()
    assert source.get_random_bytes(32) != source.get_random_bytes(32)
    # every byte value turns up in a large draw (a stuck or masked generator would not)
    assert len(set(source.get_random_bytes(1 << 16))) == 256


def test_system_source_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="-1"):
        SystemEntropySource().get_random_bytes(-1)


def test_system_source_health_and_close() -> None:
    with SystemEntropySource() as source:
        assert source.name == "system"
        assert source.health_check() == {"source": "system", "healthy": True}
    source.close()
    source.close()


# --- fallback -------------------------------------------------------------------------


def test_healthy_primary_is_not_flagged() -> None:
    primary = ScriptedSource("quantum", 0xAA)
    fallback = ScriptedSource("backup", 0x55)
    wrapper = FallbackEntropySource(primary, fallback)
    draw = wrapper.draw(16)
    assert draw.data == b"\xaa" * 16
    assert draw.source == "quantum"
    assert draw.fallback is False
    assert draw.fetch_ms >= 0
    assert fallback.calls == 0
    assert wrapper.name == "quantum"
    assert wrapper.get_random_bytes(3) == b"\xaa" * 3


def test_unavailable_primary_is_served_by_the_fallback_and_flagged() -> None:
    primary = ScriptedSource("quantum", 0xAA, [outage()])
    fallback = ScriptedSource("backup", 0x55)
    draw = FallbackEntropySource(primary, fallback).draw(16)
    assert draw.data == b"\x55" * 16
    assert draw.source == "backup"
    assert draw.fallback is True


def test_system_fallback_delivers_the_full_count() -> None:
    primary = ScriptedSource("quantum", 0xAA, [outage()])
    draw = FallbackEntropySource(primary, SystemEntropySource()).draw(20480)
    assert len(draw.data) == 20480
    assert (draw.source, draw.fallback) == ("system", True)


def test_one_warning_per_outage_and_a_recovery_message(caplog: pytest.LogCaptureFixture) -> None:
    down = outage()
    primary = ScriptedSource("quantum", 0xAA, [down, down, down, "ok", down, "ok"])
    wrapper = FallbackEntropySource(primary, ScriptedSource("backup", 0x55))
    with caplog.at_level(logging.INFO, logger=FALLBACK_LOGGER):
        flags = [wrapper.draw(4).fallback for _ in range(3)]
        assert flags == [True, True, True]
        messages = warnings_of(caplog)
        assert len(messages) == 1
        assert "'quantum'" in messages[0]
        assert "unreachable" in messages[0]
        assert "'backup'" in messages[0]

        assert wrapper.draw(4).fallback is False
        messages = warnings_of(caplog)
        assert len(messages) == 2
        assert "recovered" in messages[1]

        assert wrapper.draw(4).fallback is True  # a second outage warns again
        assert wrapper.draw(4).fallback is False
    assert len(warnings_of(caplog)) == 4
    assert wrapper.health_check()["fallback_draws"] == 4


def test_steady_primary_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    wrapper = FallbackEntropySource(ScriptedSource("quantum", 1), SystemEntropySource())
    with caplog.at_level(logging.DEBUG, logger=FALLBACK_LOGGER):
        for _ in range(5):
            wrapper.draw(8)
    assert warnings_of(caplog) == []


def test_concurrent_draws_during_an_outage_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    primary = ScriptedSource("quantum", 0xAA, [outage()])
    wrapper = FallbackEntropySource(primary, SystemEntropySource())
    flags: list[bool] = []

    def worker() -> None:
        for _ in range(25):
            flags.append(wrapper.draw(64).fallback)

    with caplog.at_level(logging.WARNING, logger=FALLBACK_LOGGER):
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert flags == [True] * 200
    assert len(warnings_of(caplog)) == 1
    assert wrapper.health_check()["fallback_draws"] == 200


@pytest.mark.parametrize(
    "error", [RuntimeError("bug in the source"), ConnectionError("reset"), ValueError("bad n")]
)
def test_other_exceptions_are_not_swallowed(error: Exception) -> None:
    fallback = ScriptedSource("backup", 0x55)
    wrapper = FallbackEntropySource(ScriptedSource("quantum", 0xAA, [error]), fallback)
    with pytest.raises(type(error), match=str(error)):
        wrapper.draw(8)
    assert fallback.calls == 0


def test_error_mode_propagates_the_outage() -> None:
    wrapper = FallbackEntropySource(ScriptedSource("quantum", 0xAA, [outage()]), None)
    with pytest.raises(EntropyUnavailableError, match="unreachable"):
        wrapper.draw(8)
    assert wrapper.health_check()["fallback_draws"] == 0


def test_short_reply_is_treated_as_unavailable() -> None:
    primary = ScriptedSource("quantum", 0xAA, ["short"])
    draw = FallbackEntropySource(primary, ScriptedSource("backup", 0x55)).draw(10)
    assert draw.data == b"\x55" * 10
    assert draw.fallback is True


def test_short_reply_in_error_mode_raises() -> None:
    wrapper = FallbackEntropySource(ScriptedSource("quantum", 0xAA, ["short"]), None)
    with pytest.raises(EntropyUnavailableError, match="returned 9 bytes, expected 10"):
        wrapper.draw(10)


def test_negative_count_is_refused_before_any_fetch() -> None:
    primary = ScriptedSource("quantum", 0xAA)
    with pytest.raises(ValueError, match="negative"):
        FallbackEntropySource(primary, SystemEntropySource()).draw(-3)
    assert primary.calls == 0


def test_zero_bytes() -> None:
    draw = FallbackEntropySource(SystemEntropySource(), SystemEntropySource()).draw(0)
    assert (draw.data, draw.fallback) == (b"", False)


def test_health_check_describes_both() -> None:
    primary = ScriptedSource("quantum", 0xAA)
    health = FallbackEntropySource(primary, SystemEntropySource()).health_check()
    assert health == {
        "source": "quantum",
        "primary": {"source": "quantum", "healthy": True, "calls": 0},
        "fallback": "system",
        "fallback_draws": 0,
        "health_tests": None,
    }
    strict = FallbackEntropySource(primary, None).health_check()
    assert strict["fallback"] is None


def test_close_closes_both_and_is_idempotent() -> None:
    primary = ScriptedSource("quantum", 0xAA)
    fallback = ScriptedSource("backup", 0x55)
    with FallbackEntropySource(primary, fallback) as wrapper:
        wrapper.draw(1)
    assert (primary.closed, fallback.closed) == (1, 1)
    wrapper.close()
    assert (primary.closed, fallback.closed) == (2, 2)
    FallbackEntropySource(primary, None).close()  # error mode: nothing else to close
    assert primary.closed == 3


# --- factory --------------------------------------------------------------------------


def test_default_config_builds_system_with_system_fallback() -> None:
    wrapper = build_entropy_source(QRSamplerConfig.load())
    assert isinstance(wrapper, FallbackEntropySource)
    assert isinstance(wrapper.primary, SystemEntropySource)
    assert isinstance(wrapper.fallback, SystemEntropySource)
    draw = wrapper.draw(64)
    assert (len(draw.data), draw.source, draw.fallback) == (64, "system", False)


def test_error_mode_builds_without_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_FALLBACK_MODE", "error")
    wrapper = build_entropy_source(QRSamplerConfig.load())
    assert wrapper.fallback is None
    assert wrapper.health_check()["fallback"] is None


def test_unknown_source_lists_the_installed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "quantum_grpc")
    with pytest.raises(ConfigValidationError) as caught:
        build_entropy_source(QRSamplerConfig.load())
    message = str(caught.value)
    assert "QR_ENTROPY_SOURCE_TYPE='quantum_grpc'" in message
    assert "installed: prng, replay, system" in message
    assert "qr-source-grpc" in message


def test_unknown_source_mentions_plugins_that_failed(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("acme", "source")
    install_plugin("quantum", "broken")
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "quantum")
    with pytest.raises(ConfigValidationError) as caught:
        build_entropy_source(QRSamplerConfig.load())
    assert "installed: acme, prng, replay, system" in str(caught.value)
    assert "plugin 'quantum' failed to load" in str(caught.value)
    assert "libacme.so.3" in str(caught.value)


def test_plugin_source_is_built_from_the_registry(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("acme", "source")
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "acme")
    wrapper = build_entropy_source(QRSamplerConfig.load(), load_registry())
    draw = wrapper.draw(4)
    assert (draw.data, draw.source, draw.fallback) == (b"\x07" * 4, "acme", False)


def test_plugin_source_outage_falls_back_to_system(
    install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin("down", "unavailable")
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "down")
    draw = build_entropy_source(QRSamplerConfig.load()).draw(32)
    assert (len(draw.data), draw.source, draw.fallback) == (32, "system", True)


def test_strict_mode_rides_out_an_outage_shorter_than_its_wait():
    primary = ScriptedSource("quantum", 0x11, [outage(), outage(), "ok"])
    draw = FallbackEntropySource(primary, None, strict_wait_s=30).draw(8)
    assert (draw.data, draw.source, draw.fallback) == (b"\x11" * 8, "quantum", False)
    assert primary.calls == 3


def test_strict_mode_gives_up_after_its_wait_and_says_why():
    primary = ScriptedSource("quantum", 0x11, [outage()])
    with pytest.raises(EntropyUnavailableError, match=r"unreachable.*QR_STRICT_WAIT_S"):
        FallbackEntropySource(primary, None, strict_wait_s=0.1).draw(8)
    assert primary.calls >= 2
