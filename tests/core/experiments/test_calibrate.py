"""``qr-sampler calibrate``: flags a source the amplifier would misread, passes a good one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from qr_sampler.cli.main import main
from qr_sampler.experiments.calibration import u_ks_distance

InstallPlugin = Callable[..., Path]
BIASED_PLUGIN = """
import numpy as np

from qr_sampler import EntropySource, hookimpl


class BiasedSource(EntropySource):
    # A device that sticks at 0xff 2% of the time: mean 2.5 above 127.5.
    name = "{name}"

    def __init__(self):
        self.rng = np.random.default_rng(3)

    def get_random_bytes(self, n):
        data = self.rng.integers(0, 256, n, dtype=np.uint8)
        data[self.rng.random(n) < 0.02] = 0xFF
        return data.tobytes()


@hookimpl
def register_entropy_sources(register):
    register("{name}", BiasedSource)
"""

STUCK_PLUGIN = """
import os

from qr_sampler import EntropySource, hookimpl



class StuckSource(EntropySource):
    name = "{name}"

    def get_random_bytes(self, n):
        return os.urandom(n - 64) + bytes(64) if n > 64 else bytes(n)


@hookimpl
def register_entropy_sources(register):
    register("{name}", StuckSource)
"""


def calibrate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(["calibrate", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("source", ["system", "prng"])
def test_a_good_source_passes(
    source: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", source)
    code, report = calibrate(capsys)
    assert (code, report["problems"], report["source"]) == (0, [], source)
    assert report["bytes"] == 4 << 20
    assert report["health_failures"] == 0
    assert abs(report["mean"] - 127.5) < 0.2
    assert abs(report["std"] - 73.9002) < 0.2
    assert 7.8 < report["mcv_min_entropy"] <= 8


def test_a_biased_source_is_flagged_with_the_settings_that_correct_it(
    capsys: pytest.CaptureFixture[str],
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_plugin("biased", code=BIASED_PLUGIN.format(name="biased"))
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "biased")
    code, report = calibrate(capsys, "--bytes", "2000000")
    assert code == 1
    assert report["collapses_u"] is True
    assert report["z_shift"] > 3
    assert report["chi_square_p"] < 1e-6
    problems = " ".join(report["problems"])  # type: ignore[arg-type]
    assert f"QR_POPULATION_MEAN={report['mean']:.4f}" in problems
    assert f"QR_POPULATION_STD={report['std']:.4f}" in problems

    # With the suggested settings the offset no longer collapses u.
    monkeypatch.setenv("QR_POPULATION_MEAN", f"{report['mean']:.4f}")
    monkeypatch.setenv("QR_POPULATION_STD", f"{report['std']:.4f}")
    _, corrected = calibrate(capsys, "--bytes", "2000000")
    assert corrected["collapses_u"] is False


def test_a_stuck_source_fails_the_health_tests(
    capsys: pytest.CaptureFixture[str],
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_plugin("stuck", code=STUCK_PLUGIN.format(name="stuck"))
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "stuck")
    code = main(["calibrate", "--bytes", "3000000"])
    out = capsys.readouterr().out
    assert code == 1
    assert "health tests:    repetition count test failed" in out
    assert "health tests failed 3 time(s)" in out


def test_a_misconfigured_population_mean_is_caught_on_a_good_source(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_POPULATION_MEAN", "126.5")
    code, report = calibrate(capsys, "--bytes", "1000000")
    assert code == 1
    assert report["collapses_u"] is True
    assert abs(report["z_shift"] - 1.0 / (73.9002 / 20480**0.5)) < 0.5


def test_u_is_uniform_without_an_offset() -> None:
    assert u_ks_distance(0.0, 1.0) < 1e-3
    assert u_ks_distance(1.0, 1.0) > 0.3
