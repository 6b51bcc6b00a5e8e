"""qr-sampler's conformance suite against every preset and the generic source, each
talking to a fake of its service over real HTTP on 127.0.0.1 (the Quantis one over TLS)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import SourceFactory, closed_port_url
from http_cases import CASES, GENERIC_SETTINGS, KEY, fake_for
from http_fakes import serving, unusual

from qr_sampler import EntropySource
from qr_sampler.testing import EntropySourceConformance


class _ServiceConformance(EntropySourceConformance):
    """The suite against one preset's fake; subclasses name the preset."""

    preset: ClassVar[str]

    @pytest.fixture
    def settings(self, tmp_path: Path) -> Iterator[dict[str, Any]]:
        with fake_for(CASES[self.preset], tmp_path) as (_, settings):
            yield settings

    @pytest.fixture
    def source(self, settings: dict[str, Any], make_source: SourceFactory) -> EntropySource:
        return make_source(**settings)

    @pytest.fixture
    def unavailable_source(
        self, settings: dict[str, Any], make_source: SourceFactory
    ) -> EntropySource:
        case = CASES[self.preset]
        dead = {**settings, "url": closed_port_url() + case.path, "ca_file": ""}
        return make_source(**dead, timeout_ms=2000, retry_count=1)

    @pytest.fixture
    def secrets(self) -> Iterable[str]:
        return [KEY]


class _SmallCalls(_ServiceConformance):
    """Services that return about 1 KB a call: the statistical samples are smaller so
    that the suite makes hundreds of calls, not thousands (bias in the decoding would
    still show at once: every byte value is checked)."""

    large_draw_bytes = 64 * 1024
    chi_square_bytes = 1 << 18
    ks_row_bytes = 128


class TestAnuConformance(_ServiceConformance):
    preset = "anu"


class TestQryptConformance(_ServiceConformance):
    preset = "qrypt"


class TestOutshiftConformance(_SmallCalls):
    preset = "outshift"


class TestLfdConformance(_SmallCalls):
    preset = "lfd"


class TestQuantisOverTlsConformance(_ServiceConformance):
    preset = "quantis"


class TestGenericConformance(EntropySourceConformance):
    """A service no preset knows, configured through settings alone (its JSON of
    nested objects is slow to build in the fake: the samples are the small ones)."""

    large_draw_bytes = _SmallCalls.large_draw_bytes
    chi_square_bytes = _SmallCalls.chi_square_bytes
    ks_row_bytes = _SmallCalls.ks_row_bytes

    @pytest.fixture
    def source(self, make_source: SourceFactory) -> Iterator[EntropySource]:
        with serving(unusual(KEY)) as service:
            yield make_source(url=service.url, **GENERIC_SETTINGS)

    @pytest.fixture
    def unavailable_source(self, make_source: SourceFactory) -> EntropySource:
        return make_source(
            url=closed_port_url(), **GENERIC_SETTINGS, timeout_ms=2000, retry_count=0
        )

    @pytest.fixture
    def secrets(self) -> Iterable[str]:
        return [KEY]
