"""The token record: one per sampled token, everything that traces it to its bytes."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from qr_sampler.settings.config import SamplingOptions


@dataclass(frozen=True)
class TokenRecord:
    """Everything needed to trace one token back to the bytes that chose it."""

    step: int
    row: int
    #: None on a token forced to end a request in strict mode (``end_reason`` says why).
    u: float | None
    z_score: float | None
    sample_mean: float | None
    sample_count: int
    token_id: int
    token_rank: int
    token_prob: float
    num_candidates: int
    temperature: float
    shannon_entropy: float | None
    entropy_source: str
    fallback: bool
    fetch_ms: float
    total_ms: float
    config_hash: str
    tag: str
    #: Provenance: the request (``None`` outside an engine adapter), the token's
    #: 0-based index in that request's output, and the bytes that chose it (``None``
    #: on a token that ended a request for want of entropy, see ``end_reason``).
    request_id: str | None
    position: int | None
    entropy_sha256: str | None
    #: Where this token's bytes start in ``QR_BYTES_PATH`` (``None`` when not archived).
    bytes_offset: int | None
    #: What ``qr-sampler verify`` needs to recompute u from the bytes alone.
    signal_amplifier_type: str
    population_mean: float
    population_std: float
    uniform_clamp_epsilon: float
    #: The arm's name, or its opaque label under QR_BLIND_ARMS.
    arm: str = ""
    #: Why the fallback served this token ("health test", "source unavailable").
    fallback_reason: str | None = None
    #: The seed of the prng source that chose this token; reproduces its bytes.
    prng_seed: int | None = None
    #: Set when qr-sampler ended the request with this token (strict-mode outage).
    end_reason: str | None = None
    #: Whose sampling parameters applied: the request's own ("request") or the
    #: server's QR_* settings ("server"); ``qr_*`` keys win in both.
    policy: str = "server"
    #: The sampling policy that chose the token, in vLLM's order: penalties, then
    #: ``temperature`` (above), min-p, top-k and top-p. ``token_prob`` is after all of them.
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    min_p: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    #: A greedy token (temperature below vLLM's 1e-5) is the argmax: no bytes, u null.
    greedy: bool = False
    #: Where the token's CDF interval starts: u lies in [cdf_low, cdf_low + token_prob).
    cdf_low: float | None = None
    #: The server that delivered the bytes, for a source balanced over several
    #: (gRPC's peer name, ``ipv4:10.0.0.7:50051``; comma-separated if chunks of one
    #: draw went to several).
    entropy_server: str | None = None
    #: What the entropy server said about the token's bytes, where its protocol says it
    #: (``QR_GRPC_*_FIELD``): the device, its timestamp and the echoed request number;
    #: null where it said nothing.
    device_id: str | None = None
    device_timestamp: int | str | None = None
    device_sequence_id: int | None = None
    #: The data-parallel rank of the engine process that wrote the record (0 without
    #: data parallelism; see ``qr_sampler.records.engine_files``).
    dp_rank: int = 0

    def to_json(self) -> str:
        """Strict JSON: a value that is NaN or infinite is written as ``null``."""
        return json.dumps(_finite(asdict(self)), separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def ended_record(
    step: int,
    row: int,
    token_id: int,
    options: SamplingOptions,
    reason: Exception,
    request_id: str | None,
    position: int | None,
    arm: str,
    dp_rank: int = 0,
) -> TokenRecord:
    """The record of a token forced to end a request because entropy did not come
    (to the request's ``arm``, by its name or blind label)."""
    return TokenRecord(
        step=step,
        row=row,
        u=None,
        z_score=None,
        sample_mean=None,
        sample_count=0,
        token_id=token_id,
        token_rank=-1,
        token_prob=0.0,
        num_candidates=0,
        temperature=0.0,
        shannon_entropy=None,
        entropy_source="none",
        fallback=False,
        fetch_ms=0.0,
        total_ms=0.0,
        config_hash=options.config_hash,
        tag=options.tag,
        request_id=request_id,
        position=position,
        entropy_sha256=None,
        bytes_offset=None,
        signal_amplifier_type=options.signal_amplifier_type,
        population_mean=options.population_mean,
        population_std=options.population_std,
        uniform_clamp_epsilon=options.uniform_clamp_epsilon,
        arm=arm,
        end_reason=str(reason),
        **policy_fields(options),
        dp_rank=dp_rank,
    )


def policy_fields(options: SamplingOptions) -> dict[str, Any]:
    """The request's sampling parameters, as records carry them."""
    return {name: getattr(options, name) for name in POLICY_FIELDS}


POLICY_FIELDS = (
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "min_p",
    "top_k",
    "top_p",
)
