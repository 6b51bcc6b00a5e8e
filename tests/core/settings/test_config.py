"""``QRSamplerConfig``, per-request overrides and the ``QRSettings`` base."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import SettingsConfigDict

from qr_sampler import ConfigValidationError, QRSamplerConfig, QRSettings, SamplingOptions
from qr_sampler.plugins.registry import get_registry
from qr_sampler.settings.base import mask_secret
from qr_sampler.settings.config import check_registered, resolve_options


def resolve(extra_args: dict[str, Any] | None, defaults: SamplingOptions | None = None):
    registry = get_registry()
    return resolve_options(
        defaults if defaults is not None else SamplingOptions(),
        extra_args,
        registry.amplifiers,
        registry.temperature_strategies,
    )


# --- defaults and sources of settings -------------------------------------------------


def test_defaults_match_the_spec() -> None:
    config = QRSamplerConfig.load()
    assert config.entropy_source_type == "system"
    assert config.fallback_mode == "system"
    assert config.log_path == ""
    assert config.signal_amplifier_type == "zscore_mean"
    assert config.sample_count == 20480
    assert config.population_mean == 127.5
    # The std of a discrete uniform byte, not the continuous 255/sqrt(12) = 73.612.
    assert config.population_std == math.sqrt((256**2 - 1) / 12)
    assert config.population_std == pytest.approx(73.9002, abs=1e-4)
    assert config.uniform_clamp_epsilon == 1e-10
    assert config.temperature_strategy == "fixed"
    assert config.fixed_temperature == 0.7
    assert (config.edt_base_temp, config.edt_exponent) == (0.8, 0.5)
    assert (config.edt_min_temp, config.edt_max_temp) == (0.1, 2.0)
    assert config.top_k == 0
    assert config.top_p == 1.0
    assert config.log_level == "summary"
    assert config.diagnostic_mode is False
    assert config.bypass is False
    assert config.tag == ""


def test_environment_variables_with_qr_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_TOP_K", "40")
    monkeypatch.setenv("QR_TOP_P", "0.9")
    monkeypatch.setenv("QR_FIXED_TEMPERATURE", "0.25")
    monkeypatch.setenv("QR_DIAGNOSTIC_MODE", "true")
    monkeypatch.setenv("QR_FALLBACK_MODE", "error")
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", " quantum_grpc ")
    monkeypatch.setenv("TOP_K", "99")  # no prefix: not ours
    config = QRSamplerConfig.load()
    assert config.top_k == 40
    assert config.top_p == 0.9
    assert config.fixed_temperature == 0.25
    assert config.diagnostic_mode is True
    assert config.fallback_mode == "error"
    assert config.entropy_source_type == "quantum_grpc"


def test_default_dotenv_in_working_directory_is_read() -> None:
    Path(".env").write_text("QR_TOP_K=7\nQR_LOG_LEVEL=full\n", encoding="utf-8")
    config = QRSamplerConfig.load()
    assert (config.top_k, config.log_level) == (7, "full")


def test_qr_env_file_names_the_dotenv_instead_of_dot_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Path(".env").write_text("QR_TOP_K=7\nQR_TAG=from-dot-env\n", encoding="utf-8")
    profile = tmp_path / "profile.env"
    profile.write_text("QR_TOP_K=9\n", encoding="utf-8")
    monkeypatch.setenv("QR_ENV_FILE", str(profile))
    config = QRSamplerConfig.load()
    assert config.top_k == 9
    assert config.tag == ""  # .env is not read when QR_ENV_FILE names another file


def test_explicit_env_file_argument(tmp_path: Path) -> None:
    profile = tmp_path / "p.env"
    profile.write_text("QR_SAMPLE_COUNT=1024\n", encoding="utf-8")
    assert QRSamplerConfig.load(env_file=str(profile)).sample_count == 1024


def test_a_missing_default_env_file_means_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QR_ENV_FILE", raising=False)
    assert QRSamplerConfig.load().top_k == 0


def test_a_missing_named_env_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QR_ENV_FILE", str(tmp_path / "nowhere.env"))
    with pytest.raises(ConfigValidationError, match=r"nowhere\.env: no such file"):
        QRSamplerConfig.load()


def test_real_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("QR_TOP_K=9\nQR_TOP_P=0.5\n", encoding="utf-8")
    monkeypatch.setenv("QR_TOP_K", "3")
    config = QRSamplerConfig.load()
    assert config.top_k == 3
    assert config.top_p == 0.5


def test_config_is_immutable() -> None:
    config = QRSamplerConfig.load()
    with pytest.raises(ValidationError):
        config.top_k = 5  # type: ignore[misc]


def test_sampling_options_carry_the_per_request_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_TOP_K", "12")
    monkeypatch.setenv("QR_TEMPERATURE_STRATEGY", "edt")
    monkeypatch.setenv("QR_LOG_PATH", "/tmp/x.jsonl")
    options = QRSamplerConfig.load().sampling_options()
    assert type(options) is SamplingOptions
    assert options.top_k == 12
    assert options.temperature_strategy == "edt"
    assert not hasattr(options, "log_path")


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("QR_TOP_P", "0"),
        ("QR_TOP_P", "1.5"),
        ("QR_TOP_P", "nan"),
        ("QR_FALLBACK_MODE", "maybe"),
        ("QR_LOG_LEVEL", "loud"),
        ("QR_SAMPLE_COUNT", "0"),
        ("QR_SAMPLE_COUNT", "lots"),
        ("QR_TOP_K", "4.5"),
        ("QR_FIXED_TEMPERATURE", "-0.1"),
        ("QR_POPULATION_STD", "0"),
        ("QR_UNIFORM_CLAMP_EPSILON", "0.5"),
        ("QR_DIAGNOSTIC_MODE", "perhaps"),
        ("QR_ENTROPY_SOURCE_TYPE", "   "),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigValidationError, match=variable) as caught:
        QRSamplerConfig.load()
    assert isinstance(caught.value, ValueError)


def test_bad_value_in_the_dotenv_file_names_the_variable() -> None:
    Path(".env").write_text("QR_LOG_LEVEL=verbose\n", encoding="utf-8")
    with pytest.raises(ConfigValidationError, match="QR_LOG_LEVEL") as caught:
        QRSamplerConfig.load()
    assert "verbose" in str(caught.value)


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_TOP_P", "2")
    monkeypatch.setenv("QR_SAMPLE_COUNT", "-1")
    with pytest.raises(ConfigValidationError) as caught:
        QRSamplerConfig.load()
    assert "QR_TOP_P" in str(caught.value)
    assert "QR_SAMPLE_COUNT" in str(caught.value)


def test_edt_min_above_max_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_EDT_MIN_TEMP", "1.5")
    monkeypatch.setenv("QR_EDT_MAX_TEMP", "1.0")
    with pytest.raises(ConfigValidationError) as caught:
        QRSamplerConfig.load()
    assert str(caught.value) == "QR_EDT_MIN_TEMP (1.5) must not exceed QR_EDT_MAX_TEMP (1.0)"


def test_edt_min_equal_to_max_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_EDT_MIN_TEMP", "1.0")
    monkeypatch.setenv("QR_EDT_MAX_TEMP", "1.0")
    assert QRSamplerConfig.load().edt_min_temp == 1.0


# --- per-request overrides ------------------------------------------------------------


def test_no_overrides_returns_the_defaults() -> None:
    defaults = SamplingOptions(top_k=5)
    assert resolve(None, defaults) is defaults
    assert resolve({}, defaults) is defaults


@pytest.mark.parametrize(
    ("extra_args", "field", "expected"),
    [
        ({"qr_bypass": "true"}, "bypass", True),
        ({"qr_bypass": 1}, "bypass", True),
        ({"qr_diagnostic_mode": "1"}, "diagnostic_mode", True),
        ({"qr_diagnostic_mode": "false"}, "diagnostic_mode", False),
        ({"qr_top_p": "0.9"}, "top_p", 0.9),
        ({"qr_top_k": "50"}, "top_k", 50),
        ({"qr_top_k": 50}, "top_k", 50),
        ({"qr_fixed_temperature": 0}, "fixed_temperature", 0.0),
        ({"qr_temperature_strategy": "edt"}, "temperature_strategy", "edt"),
        ({"qr_sample_count": "1024"}, "sample_count", 1024),
        ({"qr_tag": "run-17"}, "tag", "run-17"),
        ({"qr_log_level": "full"}, "log_level", "full"),
    ],
)
def test_overrides_accept_vllm_xargs_values(
    extra_args: dict[str, Any], field: str, expected: object
) -> None:
    options = resolve(extra_args)
    assert getattr(options, field) == expected
    assert type(getattr(options, field)) is type(expected)


def test_overrides_keep_the_server_defaults_for_other_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QR_TOP_K", "40")
    defaults = QRSamplerConfig.load().sampling_options()
    options = resolve({"qr_top_p": 0.5}, defaults)
    assert (options.top_k, options.top_p) == (40, 0.5)
    assert (defaults.top_k, defaults.top_p) == (40, 1.0)  # the defaults are untouched


def test_keys_without_the_prefix_belong_to_others() -> None:
    defaults = SamplingOptions()
    options = resolve({"top_k": 5, "guided_json": "{}", "qrtop_k": 9}, defaults)
    assert options == defaults


def test_unknown_request_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigValidationError, match="did you mean 'qr_top_k'") as caught:
        resolve({"qr_topk": 5})
    assert "qr_topk" in str(caught.value)


def test_unknown_request_key_without_a_close_match() -> None:
    with pytest.raises(ConfigValidationError, match="qr_banana") as caught:
        resolve({"qr_banana": 1})
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "variable"),
    [
        ("qr_entropy_source_type", "QR_ENTROPY_SOURCE_TYPE"),
        ("qr_fallback_mode", "QR_FALLBACK_MODE"),
        ("qr_log_path", "QR_LOG_PATH"),
    ],
)
def test_infrastructure_keys_are_refused(key: str, variable: str) -> None:
    with pytest.raises(ConfigValidationError, match="server setting") as caught:
        resolve({key: "system"})
    assert key in str(caught.value)
    assert variable in str(caught.value)


@pytest.mark.parametrize(
    ("extra_args", "key"),
    [
        ({"qr_top_p": "1.5"}, "qr_top_p"),
        ({"qr_top_p": 0}, "qr_top_p"),
        ({"qr_sample_count": 0}, "qr_sample_count"),
        ({"qr_bypass": "sometimes"}, "qr_bypass"),
        ({"qr_log_level": "loud"}, "qr_log_level"),
        ({"qr_fixed_temperature": float("inf")}, "qr_fixed_temperature"),
        ({"qr_top_k": "ten"}, "qr_top_k"),
    ],
)
def test_bad_request_values_name_the_key(extra_args: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigValidationError, match=key) as caught:
        resolve(extra_args)
    assert isinstance(caught.value, ValueError)
    assert key.upper() not in str(caught.value)  # named as the request wrote it


def test_request_edt_bounds_are_checked_against_the_defaults() -> None:
    with pytest.raises(ConfigValidationError, match="edt_min_temp"):
        resolve({"qr_edt_min_temp": 3.0})  # above the default max of 2.0
    assert resolve({"qr_edt_min_temp": 3.0, "qr_edt_max_temp": 4}).edt_max_temp == 4.0


@pytest.mark.parametrize(
    ("key", "registered"),
    [
        ("qr_signal_amplifier_type", "uniform_bits, zscore_mean"),
        ("qr_temperature_strategy", "edt, fixed"),
    ],
)
def test_unregistered_component_names_are_refused(key: str, registered: str) -> None:
    with pytest.raises(ConfigValidationError, match=key) as caught:
        resolve({key: "nope"})
    assert f"registered: {registered}" in str(caught.value)


def test_server_defaults_are_checked_with_variable_names() -> None:
    registry = get_registry()
    options = SamplingOptions(temperature_strategy="warm")
    with pytest.raises(ConfigValidationError, match="QR_TEMPERATURE_STRATEGY"):
        check_registered(options, registry.amplifiers, registry.temperature_strategies, "QR_")


# --- config hash ----------------------------------------------------------------------


def test_config_hash_is_stable_for_equal_settings() -> None:
    first = SamplingOptions(top_k=5).config_hash
    assert first == SamplingOptions(top_k=5).config_hash
    assert len(first) == 16
    int(first, 16)


@pytest.mark.parametrize(
    "change",
    [
        {"top_k": 50},
        {"top_p": 0.9},
        {"fixed_temperature": 0.8},
        {"temperature_strategy": "edt"},
        {"sample_count": 1024},
        {"population_std": 255 / math.sqrt(12)},
        {"population_mean": 128.0},
        {"uniform_clamp_epsilon": 1e-9},
        {"edt_exponent": 1.0},
    ],
)
def test_config_hash_changes_with_decisive_settings(change: dict[str, Any]) -> None:
    assert SamplingOptions(**change).config_hash != SamplingOptions().config_hash


@pytest.mark.parametrize(
    "change",
    [{"tag": "run-2"}, {"log_level": "full"}, {"log_level": "none"}, {"diagnostic_mode": True}],
)
def test_config_hash_ignores_labels_and_logging(change: dict[str, Any]) -> None:
    assert SamplingOptions(**change).config_hash == SamplingOptions().config_hash


def test_request_override_changes_the_hash() -> None:
    defaults = SamplingOptions()
    assert resolve({"qr_top_k": "50"}, defaults).config_hash != defaults.config_hash
    assert resolve({"qr_tag": "x"}, defaults).config_hash == defaults.config_hash


# --- QRSettings and secrets -----------------------------------------------------------


class VaultSettings(QRSettings):
    model_config = SettingsConfigDict(env_prefix="QR_VAULT_")
    secret_fields = frozenset({"api_key", "pin"})

    address: str = "127.0.0.1:50051"
    api_key: str = ""
    pin: int = Field(0, ge=0)


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("", ""),
        ("abc", "****"),
        ("12345678901", "****"),
        ("123456789012", "****9012"),
        ("sk-live-0123456789abcdef", "****cdef"),
    ],
)
def test_mask_secret(secret: str, masked: str) -> None:
    assert mask_secret(secret) == masked
    if secret:
        assert secret not in mask_secret(secret)


def test_source_settings_read_their_prefix_and_the_shared_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    profile = tmp_path / "profile.env"
    profile.write_text("QR_VAULT_ADDRESS=10.0.0.115:50051\nQR_TOP_K=3\n", encoding="utf-8")
    monkeypatch.setenv("QR_ENV_FILE", str(profile))
    monkeypatch.setenv("QR_VAULT_API_KEY", "sk-live-0123456789abcdef")
    settings = VaultSettings.load()
    assert settings.address == "10.0.0.115:50051"
    assert settings.api_key == "sk-live-0123456789abcdef"
    assert VaultSettings.env_names() == {
        "QR_VAULT_ADDRESS": "address",
        "QR_VAULT_API_KEY": "api_key",
        "QR_VAULT_PIN": "pin",
    }


def test_redacted_masks_secret_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_VAULT_API_KEY", "sk-live-0123456789abcdef")
    monkeypatch.setenv("QR_VAULT_PIN", "4321")
    redacted = VaultSettings.load().redacted()
    assert redacted == {"address": "127.0.0.1:50051", "api_key": "****cdef", "pin": "****"}
    assert "sk-live-0123456789abcdef" not in repr(redacted)
    assert "4321" not in repr(redacted)


def test_unset_secret_is_shown_empty() -> None:
    assert VaultSettings.load().redacted()["api_key"] == ""


def test_bad_secret_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_VAULT_PIN", "hunter2-correct-horse")
    with pytest.raises(ConfigValidationError, match="QR_VAULT_PIN") as caught:
        VaultSettings.load()
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_bad_ordinary_value_is_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QR_TOP_K", "eleven")
    with pytest.raises(ConfigValidationError, match="'eleven'"):
        QRSamplerConfig.load()
