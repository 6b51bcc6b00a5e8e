"""A step's token records, assembled from what the step knew when it ended.

The engine's thread gathers the step's facts (what changes after the step, such as
the request table and output lists, is read then); the records thread builds the
records from them, once the per-row results have reached the host.
"""

from __future__ import annotations

from dataclasses import dataclass

from qr_sampler.entropy.amplification import Amplified
from qr_sampler.entropy.base import DeviceWord
from qr_sampler.experiments.arms import StepDraw
from qr_sampler.records.host_copy import HostCopy
from qr_sampler.records.provenance import sha256_hex
from qr_sampler.records.sink import StepRecords
from qr_sampler.records.token_record import TokenRecord, ended_record, policy_fields
from qr_sampler.settings.config import GREEDY_BELOW, SamplingOptions

#: The per-row results a step hands over, in the order of the rows of ``results``.
RESULT_FIELDS = (
    "token_id",
    "token_rank",
    "token_prob",
    "cdf_low",
    "num_candidates",
    "temperature",
    "shannon_entropy",
    "valid",
)

#: A recorded row's request id and the index in its output of the token it samples.
Identity = tuple["str | None", "int | None"]


@dataclass(frozen=True)
class StepFacts:
    """What a step's records are built from."""

    step: int
    #: Whose sampling parameters applied ("request" or "server").
    policy: str
    #: The recorded logits rows, their request options and identities.
    rows: list[int]
    options: list[SamplingOptions | None]
    identities: list[Identity]
    draw: StepDraw
    amplified: Amplified
    #: ``RESULT_FIELDS`` by row, on their way to the host.
    results: HostCopy
    #: Where the step's draw starts in the bytes archive (None: not archived).
    archived_at: int | None
    total_ms: float
    dp_rank: int = 0


def step_records(facts: StepFacts) -> StepRecords:
    """The step's records, to be built on the records thread."""
    return StepRecords(
        facts.rows,
        [position for _, position in facts.identities],
        facts.options,
        lambda: _build(facts),
    )


def _build(facts: StepFacts) -> list[TokenRecord | None]:
    results = dict(zip(RESULT_FIELDS, facts.results.numpy(), strict=True))
    draw, amplified = facts.draw, facts.amplified
    built: list[TokenRecord | None] = []
    for row, option, (request_id, position) in zip(
        facts.rows, facts.options, facts.identities, strict=True
    ):
        if not results["valid"][row] or option is None:
            built.append(None)
            continue
        first, count = int(draw.offsets[row]), int(draw.counts[row])
        greedy = bool(results["temperature"][row] < GREEDY_BELOW)
        # A row drawn for no bytes was greedy from its options: nothing chose it.
        drew = count > 0
        arm = draw.arms[int(draw.row_arm[row])]
        row_draw = draw.draws[int(draw.row_arm[row])] if drew else None
        device = row_draw.device if row_draw is not None and row_draw.device else DeviceWord()
        built.append(
            TokenRecord(
                step=facts.step,
                row=row,
                u=float(amplified.u[row]) if drew else None,
                z_score=float(amplified.z_score[row]) if drew else None,
                sample_mean=float(amplified.sample_mean[row]) if drew else None,
                sample_count=count,
                token_id=int(results["token_id"][row]),
                token_rank=int(results["token_rank"][row]),
                token_prob=float(results["token_prob"][row]),
                num_candidates=int(results["num_candidates"][row]),
                temperature=float(results["temperature"][row]),
                shannon_entropy=float(results["shannon_entropy"][row]),
                entropy_source=row_draw.source if row_draw is not None else "none",
                fallback=row_draw.fallback if row_draw is not None else False,
                fetch_ms=row_draw.fetch_ms if row_draw is not None else 0.0,
                total_ms=facts.total_ms,
                config_hash=option.config_hash,
                tag=option.tag,
                request_id=request_id,
                position=position,
                entropy_sha256=sha256_hex(memoryview(draw.data)[first : first + count])
                if drew
                else None,
                bytes_offset=facts.archived_at + first
                if facts.archived_at is not None and drew
                else None,
                signal_amplifier_type=option.signal_amplifier_type,
                population_mean=option.population_mean,
                population_std=option.population_std,
                uniform_clamp_epsilon=option.uniform_clamp_epsilon,
                arm=arm.label,
                fallback_reason=row_draw.fallback_reason if row_draw is not None else None,
                prng_seed=arm.seed if row_draw is not None and not row_draw.fallback else None,
                policy=facts.policy,
                greedy=greedy,
                cdf_low=None if greedy else float(results["cdf_low"][row]),
                **policy_fields(option),
                entropy_server=row_draw.server if row_draw is not None else None,
                device_id=device.device_id,
                device_timestamp=device.timestamp,
                device_sequence_id=device.sequence_id,
                dp_rank=facts.dp_rank,
            )
        )
    return built


def ended_step_records(
    step: int,
    rows: list[int],
    options: list[SamplingOptions],
    identities: list[Identity],
    draw: StepDraw,
    end_token_id: int,
    dp_rank: int = 0,
) -> StepRecords:
    """The records of rows ended for want of entropy (strict mode), already built."""
    records = []
    for row, option, (request_id, position) in zip(rows, options, identities, strict=True):
        arm = int(draw.row_arm[row])
        records.append(
            ended_record(
                step,
                row,
                end_token_id,
                option,
                draw.failures[arm],
                request_id,
                position,
                draw.arms[arm].label,
                dp_rank,
            )
        )
    return StepRecords.ready(records, options)
