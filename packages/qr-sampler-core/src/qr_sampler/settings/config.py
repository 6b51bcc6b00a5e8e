"""``QRSamplerConfig``: server-wide settings from ``QR_*`` variables, per-request overrides
from ``SamplingParams.extra_args`` keys ``qr_<field>``."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from qr_sampler.errors import ConfigValidationError
from qr_sampler.settings.arm_spec import parse_arms
from qr_sampler.settings.base import QRSettings, describe_validation_error
from qr_sampler.settings.names import did_you_mean

REQUEST_KEY_PREFIX = "qr_"

# The standard deviation of one byte drawn uniformly from {0, ..., 255}: a discrete
# uniform over n = 256 values has variance (n^2 - 1) / 12. The continuous formula
# 255 / sqrt(12) = 73.612 understates it, which makes |z| too large and u too
# dispersed towards 0 and 1.
DISCRETE_UNIFORM_BYTE_STD = math.sqrt((256**2 - 1) / 12)

LogLevel = Literal["none", "summary", "full"]
#: Smallest admitted population_std (a device that repeats one byte value has 0).
MIN_BYTE_STD = 1e-6
#: A temperature below this is greedy (the argmax): vLLM's own threshold, ``_SAMPLING_EPS``.
GREEDY_BELOW = 1e-5
#: top_k beyond any vocabulary: the sampler's tables hold it as a float64.
TOP_K_LIMIT = 1 << 31


_NOT_DECISIVE = frozenset({"tag", "log_level", "diagnostic_mode", "bypass", "arm"})


class SamplingOptions(BaseModel):
    """The settings a single request may override with ``qr_<field>``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    signal_amplifier_type: str = Field(default="zscore_mean", description="Bytes-to-u amplifier")
    sample_count: int = Field(
        default=20480, ge=1, le=1 << 22, description="Entropy bytes per token"
    )
    # A byte's mean lies in [0, 255] and its std in (0, 127.5]; the floor on the std
    # keeps z = (M - mu) / (std / sqrt(N)) finite for every admitted sample_count.
    population_mean: float = Field(
        default=127.5, ge=0, le=255, description="Mean of one byte under the null"
    )
    population_std: float = Field(
        default=DISCRETE_UNIFORM_BYTE_STD,
        ge=MIN_BYTE_STD,
        le=127.5,
        description="Std of one byte under the null",
    )
    # Below 1e-15, 1 - eps rounds to 1 in float64 and u could reach 1.
    uniform_clamp_epsilon: float = Field(
        default=1e-10, ge=1e-15, lt=0.5, description="u is clamped to (eps, 1 - eps)"
    )
    temperature_strategy: str = Field(default="fixed", description="fixed or edt (or a plugin's)")
    fixed_temperature: float = Field(default=0.7, ge=0, description="Temperature; 0 is greedy")
    edt_base_temp: float = Field(
        default=0.8, ge=0, description="EDT: T = base * H_norm ** exponent"
    )
    edt_exponent: float = Field(default=0.5, ge=0, description="EDT exponent")
    edt_min_temp: float = Field(default=0.1, ge=0, description="EDT lower clamp")
    edt_max_temp: float = Field(default=2.0, ge=0, description="EDT upper clamp")
    top_k: int = Field(
        default=0,
        ge=-TOP_K_LIMIT,
        le=TOP_K_LIMIT,
        description="Keep the k most probable tokens; <= 0 disables",
    )
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus mass; 1.0 disables")
    min_p: float = Field(
        default=0.0, ge=0, le=1, description="Drop tokens below min_p times the top token's prob"
    )
    # vLLM's own bounds (SamplingParams): penalties outside them are refused there too.
    repetition_penalty: float = Field(
        default=1.0, gt=0, description="Divide (or multiply) seen tokens' logits by it"
    )
    frequency_penalty: float = Field(
        default=0.0, ge=-2, le=2, description="Subtract per occurrence in the output"
    )
    presence_penalty: float = Field(
        default=0.0, ge=-2, le=2, description="Subtract once if present in the output"
    )
    log_level: LogLevel = Field(
        default="summary", description="Python logging: none, summary, full"
    )
    diagnostic_mode: bool = Field(default=False, description="Keep recent token records in memory")
    bypass: bool = Field(default=False, description="Leave the request to vLLM's own sampler")
    # vllm_xargs may carry a numeric label; keep it as the text the user sent.
    tag: str = Field(
        default="",
        max_length=256,
        coerce_numbers_to_str=True,
        description="Free label copied into every record",
    )
    arm: str = Field(
        default="",
        max_length=64,
        description="Experiment arm from QR_ARMS; empty: the first arm",
    )

    @model_validator(mode="after")
    def _edt_bounds_ordered(self) -> SamplingOptions:
        if self.edt_min_temp > self.edt_max_temp:
            raise ValueError(
                f"edt_min_temp ({self.edt_min_temp}) must not exceed "
                f"edt_max_temp ({self.edt_max_temp})"
            )
        return self

    @cached_property
    def config_hash(self) -> str:
        """Identifies the settings that decide a token (not labels or logging)."""
        # Only per-request fields: the same settings hash alike on QRSamplerConfig.
        decisive = self.model_dump(
            include=set(SamplingOptions.model_fields) - _NOT_DECISIVE,
        )
        blob = json.dumps(decisive, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


PER_REQUEST_FIELDS = frozenset(SamplingOptions.model_fields)
#: The options an amplifier or a temperature strategy reads as numbers, in the order
#: of the sampler's request table columns.
NUMERIC_FIELDS: tuple[str, ...] = tuple(
    name for name, field in SamplingOptions.model_fields.items() if field.annotation in (int, float)
)


class QRSamplerConfig(QRSettings, SamplingOptions):
    """Everything core reads from ``QR_*`` variables and the ``QR_ENV_FILE`` dotenv."""

    model_config = SettingsConfigDict(env_prefix="QR_", extra="ignore", frozen=True)

    entropy_source_type: str = Field(default="system", description="Registered entropy source name")
    sampling_policy: Literal["request", "server"] = Field(
        default="request",
        description="Whose temperature, top-k/top-p, min-p and penalties apply: each "
        "request's own (vLLM's SamplingParams) or these QR_* settings for every request",
    )
    fallback_mode: Literal["system", "error"] = Field(
        default="system", description="On source failure: draw from os.urandom (flagged) or fail"
    )
    strict_wait_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="Strict mode: how long an engine step retries the source before it ends "
        "the step's requests",
    )
    log_path: str = Field(
        default="",
        description="Append one JSON line per token here; empty = off; must be writable "
        "when the sampler starts (qr_sampler.record_file.check_log_path)",
    )
    bytes_path: str = Field(
        default="",
        description="Append every entropy byte that chose a token here (sample_count per "
        "token); records give bytes_offset; empty = off",
    )
    signing_key: str = Field(
        default="",
        description="PEM Ed25519 private key file (qr-sampler keys new): signs the run "
        "manifest and chain heads; empty = no signing",
    )
    chain_head_interval_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds between chain heads written beside the records (0: after "
        "every step); one is always written on close",
    )
    log_rotate_mb: float = Field(
        default=0.0,
        ge=0,
        description="Go on in a new records file part (and bytes archive part) once the "
        "records file passes this many MB (10^6 bytes); 0 = off",
    )
    arms: str = Field(
        default="",
        description="Experiment arms 'name=source,...'; empty: one arm, the entropy source",
    )
    arm_assignment: Literal["request", "random"] = Field(
        default="request", description="Who picks a request's arm: its qr_arm, or the server"
    )
    arm_seed: int | None = Field(
        default=None,
        ge=0,
        lt=1 << 63,
        description="Seed of random arm assignment; unset: a random seed, logged",
    )
    blind_arms: bool = Field(
        default=False, description="Records carry opaque arm labels; the key goes to a file"
    )
    health_tests: bool = Field(
        default=True, description="NIST SP 800-90B repetition and proportion tests on all bytes"
    )
    health_min_entropy: float = Field(
        default=7.0, gt=0, le=8, description="Claimed min-entropy per byte the tests hold to"
    )

    @field_validator("entropy_source_type")
    @classmethod
    def _source_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name an entropy source, e.g. 'system'")
        return value.strip()

    @field_validator("arms")
    @classmethod
    def _arms_parse(cls, value: str) -> str:
        parse_arms(value)
        return value.strip()

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions.model_validate(self.model_dump(include=set(PER_REQUEST_FIELDS)))


INFRASTRUCTURE_FIELDS = frozenset(QRSamplerConfig.model_fields) - PER_REQUEST_FIELDS


def request_overrides(extra_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``qr_*`` entries of a request's ``extra_args``, keyed by field name.

    Keys without the prefix belong to other processors and are ignored; unknown
    ``qr_*`` keys and server-wide settings are refused with a message naming them.
    """
    if extra_args is not None and not isinstance(extra_args, Mapping):
        raise ConfigValidationError(
            f"extra_args must be a mapping of qr_* keys to values, not {type(extra_args).__name__}"
        )
    overrides: dict[str, Any] = {}
    for key, value in (extra_args or {}).items():
        if not isinstance(key, str):
            raise ConfigValidationError(
                f"extra_args keys must be strings such as 'qr_top_k', not {key!r}"
            )
        if not key.startswith(REQUEST_KEY_PREFIX):
            continue
        field = key[len(REQUEST_KEY_PREFIX) :]
        if field in INFRASTRUCTURE_FIELDS:
            raise ConfigValidationError(
                f"{key} is a server setting and cannot be set per request; "
                f"set QR_{field.upper()} where the server starts"
            )
        if field not in PER_REQUEST_FIELDS:
            raise ConfigValidationError(f"unknown request key {key!r}{_suggest(field)}")
        overrides[field] = value
    return overrides


def resolve_options(
    defaults: SamplingOptions,
    extra_args: Mapping[str, Any] | None,
    amplifiers: Mapping[str, object],
    temperature_strategies: Mapping[str, object],
    standard: Mapping[str, Any] | None = None,
) -> SamplingOptions:
    """The effective options of one request: server defaults, then the request's own
    ``standard`` sampling parameters (under ``QR_SAMPLING_POLICY=request``), then its
    ``qr_*`` overrides, each winning over the one before.

    Strings such as ``"true"``, ``"1"`` and ``"0.9"`` are accepted because vLLM's
    OpenAI server passes ``vllm_xargs`` values only as str, int or float.
    """
    overrides = {**(standard or {}), **request_overrides(extra_args)}
    if overrides:
        try:
            options = SamplingOptions.model_validate({**defaults.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigValidationError(
                describe_validation_error(exc, REQUEST_KEY_PREFIX, upper=False)
            ) from None
    else:
        options = defaults
    check_registered(options, amplifiers, temperature_strategies, REQUEST_KEY_PREFIX)
    return options


def check_registered(
    options: SamplingOptions,
    amplifiers: Mapping[str, object],
    temperature_strategies: Mapping[str, object],
    prefix: str,
) -> None:
    """Amplifier and temperature names must be ones a plugin registered."""
    for field, known in (
        ("signal_amplifier_type", amplifiers),
        ("temperature_strategy", temperature_strategies),
    ):
        value = getattr(options, field)
        if value not in known:
            raise ConfigValidationError(
                f"{_named(prefix, field)}: unknown value {value!r}{did_you_mean(value, known)}; "
                f"registered: {', '.join(sorted(known))}"
            )
    problem = too_few_bytes(options, amplifiers, prefix)
    if problem:
        raise ConfigValidationError(problem)


def too_few_bytes(
    options: SamplingOptions, amplifiers: Mapping[str, object], prefix: str
) -> str | None:
    """Why ``sample_count`` is below what the chosen amplifier needs (its
    ``min_sample_count``), or None; registries hold components, tests plain amplifiers."""
    component = amplifiers.get(options.signal_amplifier_type)
    needed = getattr(getattr(component, "value", component), "min_sample_count", 1)
    if options.sample_count >= needed:
        return None
    return (
        f"{_named(prefix, 'sample_count')}={options.sample_count} is too few bytes for "
        f"{_named(prefix, 'signal_amplifier_type')}={options.signal_amplifier_type}: it "
        f"needs at least {needed} per token"
    )


def _named(prefix: str, field: str) -> str:
    """A field as the user writes it: ``QR_SAMPLE_COUNT`` or ``qr_sample_count``."""
    name = f"{prefix}{field}"
    return name.upper() if prefix.isupper() else name


def _suggest(field: str) -> str:
    close = difflib.get_close_matches(field, sorted(PER_REQUEST_FIELDS), n=1)
    return f"; did you mean '{REQUEST_KEY_PREFIX}{close[0]}'?" if close else ""
