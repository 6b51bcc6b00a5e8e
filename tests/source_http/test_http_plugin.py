"""The entry point, the environment, ``qr-sampler probe`` and ``config``: the source as a
user meets it, configured by QR_HTTP_* variables alone."""

from __future__ import annotations

import json

import pytest
from http_cases import CASES, GENERIC_SETTINGS, KEY, fake_for
from http_fakes import serving, unusual

from qr_sampler import FallbackEntropySource, QRSamplerConfig
from qr_sampler.cli.main import main
from qr_sampler.entropy.factory import build_entropy_source
from qr_sampler.plugins.registry import load_registry
from qr_source_http import HttpEntropySource, HttpSourceSettings


def test_registered_by_the_installed_distribution() -> None:
    component = load_registry().entropy_sources["http"]
    assert component.provider.distribution == "qr-source-http"
    assert component.value is HttpEntropySource
    assert component.settings == (HttpSourceSettings,)


def set_env(monkeypatch: pytest.MonkeyPatch, settings: dict[str, object]) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(f"QR_HTTP_{name.upper()}", str(value))


def test_a_service_no_preset_knows_works_from_variables_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with serving(unusual(KEY)) as service:
        monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "http")
        set_env(monkeypatch, {"url": service.url, **GENERIC_SETTINGS})
        with build_entropy_source(QRSamplerConfig.load()) as source:
            assert isinstance(source, FallbackEntropySource)
            draw = source.draw(20_000)
        request = service.requests[0]
    assert (len(draw.data), draw.source, draw.fallback) == (20_000, "http", False)
    assert request.method == "POST"
    assert request.json() == {"want": {"words": 2048}}
    assert request.headers["x-token"] == KEY
    assert len(service.requests) == 3  # 5,000 words at 2,048 a call


@pytest.mark.parametrize("preset", sorted(CASES))
def test_probe_shows_latency_throughput_and_what_a_call_returned_but_no_key(
    preset: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    with fake_for(CASES[preset], tmp_path) as (_, settings):
        monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "http")
        set_env(monkeypatch, settings)
        assert main(["probe", "--json", "--bytes", "7", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert KEY not in out
    report = json.loads(out)
    assert report["latency_ms_p50"] > 0
    assert report["throughput_mb_s"] > 0
    health = report["health"]
    assert health["preset"] == preset
    assert health["authenticated"] is bool(CASES[preset].settings.get("api_key"))
    last = health["last_call"]
    assert last["status"] == 200
    # 7 bytes are one unit: an ANU element is 20 bytes, a Qrypt block 1 KiB.
    assert last["bytes"] == {"anu": 20, "qrypt": 1024}.get(preset, 7)
    assert len(last["first_bytes_hex"]) == 2 * min(8, last["bytes"])


def test_config_masks_the_key(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "http")
    set_env(monkeypatch, {"preset": "anu", "api_key": KEY})
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert KEY not in out
    assert "QR_HTTP_PRESET=anu" in out
