"""One test per way a service can fail: each is a clear EntropyUnavailableError (never
wrong bytes), retried or not as its kind says, within the draw's deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import http_fakes
import pytest
from conftest import SourceFactory
from http_cases import KEY
from http_fakes import FakeService, Reply, Request, json_reply, serving

from qr_sampler import EntropyUnavailableError, FallbackEntropySource, SystemEntropySource
from qr_source_http.failures import QuotaExceededError

#: Generous bounds: a loaded machine may be slow, but a hang would blow far past them.
PROMPT_S = 20.0


@pytest.fixture
def service() -> Iterator[FakeService]:
    with serving(http_fakes.anu(KEY)) as running:
        yield running


@pytest.fixture
def anu(service: FakeService, make_source: SourceFactory):
    def make(**settings: object):
        return make_source(preset="anu", url=service.url, api_key=KEY, **settings)

    return make


def failure(source, n: int = 64) -> EntropyUnavailableError:
    with pytest.raises(EntropyUnavailableError) as caught:
        source.get_random_bytes(n)
    assert KEY not in str(caught.value)
    return caught.value


def always(reply: Reply):
    return lambda _request: reply


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_key_fails_at_once_and_says_which_setting(service, anu, status):
    service.handler = always(json_reply({"message": f"bad key {KEY}"}, status))
    error = failure(anu())
    assert f"HTTP {status}: the service did not accept the credentials" in str(error)
    assert "QR_HTTP_API_KEY" in str(error)
    assert len(service.requests) == 1, "a refused key is not asked again"


def test_a_429_with_a_long_retry_after_fails_at_once_as_a_quota_and_holds_calls(service, anu):
    service.handler = always(json_reply({"message": "quota"}, 429, **{"Retry-After": "3600"}))
    source = anu()
    start = time.monotonic()
    error = failure(source)
    assert time.monotonic() - start < PROMPT_S
    assert isinstance(error, QuotaExceededError)
    assert error.reason == "quota or rate limit"
    assert "quota or rate limit is reached (not an outage); it asks to wait 3600 s" in str(error)
    # Until then no call is made: each would be refused, and may count against the quota.
    assert "not an outage" in str(failure(source))
    assert len(service.requests) == 1
    health = source.health_check()
    assert health["quota_hold_s"] > 3000
    assert health["healthy"] is False
    assert health["breaker_state"] == "closed"


def test_a_429_with_a_short_retry_after_is_waited_out(service, anu):
    replies = iter([json_reply({}, 429, **{"Retry-After": "1"})])

    def answer(request: Request) -> Reply:
        return next(replies, None) or http_fakes.anu(KEY)(request)

    service.handler = answer
    assert len(anu().get_random_bytes(64)) == 64
    assert len(service.requests) == 2


def test_a_429_without_retry_after_is_retried_with_backoff_then_reported(service, anu):
    service.handler = always(json_reply({"message": "slow down"}, 429))
    source = anu(retry_count=2)
    error = failure(source)
    assert isinstance(error, QuotaExceededError)
    assert len(service.requests) == 3
    # No wait was asked for, so the next draw tries again.
    failure(source)
    assert len(service.requests) == 6


def test_the_fallback_records_a_quota_as_a_quota(service, anu):
    service.handler = always(json_reply({}, 429, **{"Retry-After": "600"}))
    with FallbackEntropySource(anu(), SystemEntropySource()) as source:
        draw = source.draw(7)
    assert (len(draw.data), draw.fallback, draw.fallback_reason) == (
        7,
        True,
        "quota or rate limit",
    )


def test_a_500_is_retried_then_reported_and_opens_the_breaker(service, anu):
    service.handler = always(json_reply({"message": f"internal error for key {KEY}"}, 500))
    source = anu(retry_count=1, breaker_failures=2, breaker_recovery_s=3600)
    error = failure(source)
    assert "HTTP 500 from the service" in str(error)
    assert "****" in str(error), "the key the server echoed is masked"
    assert len(service.requests) == 2
    failure(source)
    assert source.health_check()["breaker_state"] == "open"
    error = failure(source)
    assert "http (anu preset) at 127.0.0.1:" in str(error)
    assert "circuit breaker open after 2 failed draws" in str(error)
    assert len(service.requests) == 4, "an open breaker makes no call"


def test_the_breaker_probes_after_its_recovery_window_and_closes(service, anu):
    service.handler = always(json_reply({}, 503))
    source = anu(retry_count=0, breaker_failures=1, breaker_recovery_s=0)
    failure(source)
    service.handler = http_fakes.anu(KEY)
    assert len(source.get_random_bytes(64)) == 64
    assert source.health_check()["breaker_state"] == "closed"


def test_success_false_is_a_failure_naming_the_service_message(service, anu):
    service.handler = always(json_reply({"success": False, "message": "Limit Exceeded"}))
    error = failure(anu())
    assert "success is false, not true ('Limit Exceeded')" in str(error)
    assert len(service.requests) == 1


def test_an_error_field_is_a_failure(make_source: SourceFactory):
    with serving(always(json_reply({"error": "length too large"}))) as service:
        error = failure(make_source(preset="lfd", url=service.url))
    assert "the service reports an error: 'length too large'" in str(error)


def test_short_data_is_a_failure_not_fewer_bytes(service, anu):
    def short(request: Request) -> Reply:
        length = int(request.query["length"])
        data = ["ab" * 20] * (length - 1)
        return json_reply({"success": True, "type": "hex16", "length": str(length), "data": data})

    service.handler = short
    error = failure(anu(), 100)
    assert "short reply: 80 bytes where 5 units of 20 (100 bytes) were asked for" in str(error)


@pytest.mark.parametrize(
    ("preset", "document", "message"),
    [
        ("anu", {"success": True, "data": ["zz" * 20]}, "not hex: 'zzzz"),
        ("anu", {"success": True, "data": "ab" * 20}, "expected a list of hex strings"),
        ("anu", {"success": True, "values": []}, "the reply has no 'data' (it has: success"),
        ("qrypt", {"random": ["not base64!"]}, "not base64"),
        ("outshift", {"random_numbers": [{"decimal": "256"}]}, "256 does not fit in 8 bits"),
        ("outshift", {"random_numbers": [{"decimal": 7}]}, "expected a string of decimal digits"),
        ("outshift", {"random_numbers": {"decimal": "1"}}, "'random_numbers' is an object"),
        ("lfd", {"qrn": 1234}, "expected a hex string, got a number"),
    ],
)
def test_a_reply_in_the_wrong_encoding_is_a_failure(
    make_source: SourceFactory, preset: str, document: object, message: str
):
    with serving(always(json_reply(document))) as service:
        error = failure(make_source(preset=preset, url=service.url, api_key=KEY))
    assert message in str(error)
    assert len(service.requests) == 1


def test_integers_that_are_booleans_are_refused(make_source: SourceFactory):
    with serving(always(json_reply({"n": [True, 1]}))) as service:
        source = make_source(url=service.url, data_path="n", encoding="integers")
        assert "expected an integer, got 'true'" in str(failure(source, 2))


def test_a_reply_that_is_not_json_is_a_failure(service, anu):
    service.handler = always(Reply(body=b"<html>gateway</html>", content_type="text/html"))
    assert "the reply is not JSON: '<html>gateway</html>'" in str(failure(anu()))


def test_raw_octets_served_as_text_are_refused(make_source: SourceFactory):
    with serving(always(Reply(body=b"Service Unavailable" * 10, content_type="text/plain"))) as s:
        error = failure(make_source(preset="quantis", url=s.url + "/api/2.0/streambytes"))
    assert "expected raw octets (application/octet-stream), got text/plain" in str(error)


def test_a_reply_far_larger_than_asked_is_cut_off(make_source: SourceFactory):
    huge = Reply(body=bytes(200_000), content_type="application/octet-stream")
    with serving(always(huge)) as service:
        error = failure(make_source(url=service.url, max_units_per_call=16), 16)
    assert "the reply is larger than" in str(error)


def test_a_server_that_never_answers_fails_the_draw_at_its_deadline(service, anu):
    service.handler = always(Reply(hang=True))
    source = anu(timeout_ms=1500)
    start = time.monotonic()
    error = failure(source)
    elapsed = time.monotonic() - start
    assert 1.4 < elapsed < PROMPT_S
    assert "no complete reply within" in str(error) or "ran out of time" in str(error)


def test_a_slow_trickle_fails_the_draw_at_its_deadline(service, anu):
    body = json_reply({"success": True, "data": ["ab" * 20] * 4}).body
    service.handler = always(Reply(body=body, trickle_s=0.1))
    source = anu(timeout_ms=1500)
    start = time.monotonic()
    error = failure(source, 80)
    assert time.monotonic() - start < PROMPT_S
    assert "too slowly" in str(error) or "ran out of time" in str(error)


def test_a_redirect_is_not_followed_silently(service, anu):
    service.handler = always(Reply(301, headers={"Location": "https://elsewhere.example/qrng"}))
    error = failure(anu())
    assert "moved to https://elsewhere.example/qrng; set QR_HTTP_URL" in str(error)


def test_another_4xx_names_the_settings_to_check(service, anu):
    service.handler = always(json_reply({"message": "length too large"}, 400))
    assert "HTTP 400: the service refused the request" in str(failure(anu()))


def test_nothing_listening_is_a_retried_transport_failure(make_source: SourceFactory):
    from conftest import closed_port_url

    error = failure(make_source(url=closed_port_url(), retry_count=1, timeout_ms=5000))
    assert "ConnectError" in str(error)


def test_a_self_signed_server_without_its_ca_file_says_to_set_it(
    make_source: SourceFactory, tmp_path: Path
):
    tls, _ = http_fakes.self_signed(tmp_path)
    with serving(http_fakes.quantis(), tls) as service:
        error = failure(make_source(preset="quantis", url=service.url + "/api/2.0/streambytes"))
        assert len(service.requests) == 0
    assert "TLS certificate is not trusted" in str(error)
    assert "set QR_HTTP_CA_FILE" in str(error)


def test_the_key_is_in_no_log_even_at_debug(service, anu, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    source = anu(retry_count=1)
    source.get_random_bytes(64)
    service.handler = always(json_reply({"message": f"echo {KEY}"}, 502))
    failure(source)
    assert caplog.records, "debug logging was captured"
    assert KEY not in caplog.text


def test_a_closed_source_fails_cleanly(anu):
    source = anu()
    source.close()
    assert "closed" in str(failure(source))
