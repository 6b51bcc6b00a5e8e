"""The ``prng`` source: a reproducible control arm, held to the conformance suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from core_support import documented_stream

from qr_sampler import EntropySource
from qr_sampler.entropy.prng import PRNGEntropySource, PRNGSettings
from qr_sampler.errors import ConfigValidationError
from qr_sampler.plugins.registry import get_registry
from qr_sampler.testing import EntropySourceConformance


class TestPRNGSource(EntropySourceConformance):
    @pytest.fixture
    def source(self) -> Iterator[EntropySource]:
        with PRNGEntropySource() as source:
            yield source


@pytest.mark.parametrize("sizes", [[1, 7, 8, 9, 1000, 3], [20480] * 3, [5, 0, 11, 64]])
def test_bytes_follow_the_documented_stream_however_draws_are_cut(
    sizes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_PRNG_SEED", "424242")
    source = PRNGEntropySource()
    drawn = b"".join(source.get_random_bytes(n) for n in sizes)
    assert drawn == documented_stream(424242, sum(sizes))


def test_seeds_give_distinct_streams() -> None:
    first = PRNGEntropySource(PRNGSettings(seed=1)).get_random_bytes(64)
    again = PRNGEntropySource(PRNGSettings(seed=1)).get_random_bytes(64)
    other = PRNGEntropySource(PRNGSettings(seed=2)).get_random_bytes(64)
    assert first == again != other


def test_an_unset_seed_is_random_logged_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="qr_sampler"):
        one, two = PRNGEntropySource(), PRNGEntropySource()
    assert one.seed != two.seed
    assert f"seeded with {one.seed} (QR_PRNG_SEED unset" in caplog.text
    assert one.health_check()["seed"] == one.seed
    assert one.get_random_bytes(100) == documented_stream(one.seed, 100)


@pytest.mark.parametrize("value", ["-1", "abc", str(1 << 63)])
def test_a_bad_seed_names_the_variable(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_PRNG_SEED", value)
    with pytest.raises(ConfigValidationError, match="QR_PRNG_SEED"):
        PRNGEntropySource()


def test_registered_by_the_builtin_plugin_with_its_settings() -> None:
    component = get_registry().entropy_sources["prng"]
    assert component.value is PRNGEntropySource
    assert component.settings == (PRNGSettings,)
    assert component.provider.plugin == "qr_sampler.builtins"
