"""Presets resolve to each service's documented request; settings win over presets;
bad settings are errors that say what to write instead (and never echo the key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SourceFactory
from http_cases import CASES, KEY, fake_for

from qr_sampler import ConfigValidationError
from qr_source_http import PRESETS, HttpEntropySource, HttpSourceSettings
from qr_source_http.call import retry_after_s


def settings(**values: object) -> HttpSourceSettings:
    return HttpSourceSettings.from_assignments(
        {f"QR_HTTP_{name.upper()}": str(value) for name, value in values.items()}
    )


def test_every_preset_is_tested_against_a_fake() -> None:
    assert set(PRESETS) == set(CASES)


@pytest.mark.parametrize("preset", sorted(CASES))
def test_a_draw_is_split_at_the_documented_cap_and_fetched_in_parallel(
    preset: str, make_source: SourceFactory, tmp_path: Path
) -> None:
    case = CASES[preset]
    with fake_for(case, tmp_path) as (service, values):
        source = make_source(**values)
        n = 2 * case.bytes_per_call + 7
        assert len(source.get_random_bytes(n)) == n
    assert len(service.requests) == 3


def test_the_requests_are_the_documented_ones(make_source: SourceFactory, tmp_path: Path) -> None:
    seen = {}
    for preset, case in CASES.items():
        with fake_for(case, tmp_path) as (service, values):
            make_source(**values).get_random_bytes(30)
            seen[preset] = service.requests[0]
    assert seen["anu"].query == {"length": "2", "type": "hex16", "size": "10"}
    assert seen["anu"].headers["x-api-key"] == KEY
    assert seen["qrypt"].query == {"size": "1"}
    assert seen["qrypt"].headers["authorization"] == f"Bearer {KEY}"
    assert seen["outshift"].method == "POST"
    assert seen["outshift"].json() == {
        "encoding": "raw",
        "format": "decimal",
        "bits_per_block": 8,
        "number_of_blocks": 30,
    }
    assert seen["outshift"].headers["x-id-api-key"] == KEY
    assert seen["lfd"].query == {"length": "30", "format": "HEX"}
    assert "x-api-key" not in seen["lfd"].headers
    assert (seen["quantis"].path, seen["quantis"].query) == ("/api/2.0/streambytes", {"size": "30"})


def test_a_setting_wins_over_the_preset() -> None:
    api = settings(preset="anu", max_units_per_call=100, url="http://127.0.0.1:9/mirror").api()
    assert (api.max_units_per_call, api.unit_bytes, api.url) == (
        100,
        20,
        "http://127.0.0.1:9/mirror",
    )
    assert api.encoding == "hex_list"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "http://qrng.example.org"}, "plain http:// to a host that is not this machine"),
        ({"url": "ftp://127.0.0.1/x"}, "must be an https:// URL with a host"),
        ({"method": "GET"}, "QR_HTTP_URL is empty: name the service's endpoint"),
        ({"preset": "quantis"}, "https://<appliance-host>/api/2.0/streambytes"),
        ({"url": "https://q.example", "body": "{oops"}, "QR_HTTP_BODY is not JSON"),
        ({"url": "https://q.example", "encoding": "base32"}, "QR_HTTP_ENCODING"),
        ({"url": "https://q.example", "int_bits": 12}, "whole bytes per integer"),
        ({"preset": "anu", "api_key": " spaced "}, "printable ASCII"),
        ({"preset": "bogus"}, "QR_HTTP_PRESET"),
    ],
)
def test_bad_settings_say_what_to_do(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        settings(**values)
    assert message in str(caught.value)
    assert " spaced " not in str(caught.value)


def test_a_source_left_unconfigured_is_no_error_until_it_is_built() -> None:
    assert settings().preset == ""
    with pytest.raises(ConfigValidationError, match="QR_HTTP_URL is empty"):
        HttpEntropySource(HttpSourceSettings())


def test_loopback_names_may_use_plain_http() -> None:
    for url in ("http://127.0.0.1:8000", "http://localhost:8000/x", "http://[::1]:8000"):
        assert settings(url=url).api().url == url


def test_a_placeholder_key_is_refused() -> None:
    with pytest.raises(ConfigValidationError, match="placeholder"):
        settings(preset="anu", api_key="<your-api-key>")


def test_an_unreadable_ca_file_is_a_config_error(make_source: SourceFactory, tmp_path) -> None:
    with pytest.raises(ConfigValidationError, match=r"QR_HTTP_CA_FILE=.* cannot be used"):
        make_source(url="https://127.0.0.1:9", ca_file=str(tmp_path / "missing.pem"))


def test_retry_after_takes_seconds_or_a_date() -> None:
    assert retry_after_s("120") == 120.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None
