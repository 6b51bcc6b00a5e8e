"""One engine step: fetch entropy, amplify to u, select and force a token per row.

Engine-agnostic; the vLLM adapter maps its requests to slots of ``table`` and
calls ``sample`` with the slot of every logits row.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from qr_sampler.entropy.amplification import Amplified
from qr_sampler.entropy.fallback import FallbackEntropySource
from qr_sampler.errors import EntropyUnavailableError
from qr_sampler.experiments.arms import ArmSet, StepDraw
from qr_sampler.plugins.registry import Registry, get_registry
from qr_sampler.records.assembly import (
    RESULT_FIELDS,
    StepFacts,
    ended_step_records,
    step_records,
)
from qr_sampler.records.bytes_archive import BytesArchive
from qr_sampler.records.engine_files import engine_path
from qr_sampler.records.host_copy import HostCopy
from qr_sampler.records.manifest import run_manifest
from qr_sampler.records.provenance import Origin, RequestIds
from qr_sampler.records.signing import Signer
from qr_sampler.records.sink import RecordSink
from qr_sampler.records.summary import SummaryLog
from qr_sampler.sampling.columns import DeviceColumns
from qr_sampler.sampling.ops.forcing import end_rows, force_tokens
from qr_sampler.sampling.ops.penalties import apply_penalties
from qr_sampler.sampling.ops.walk import Selection
from qr_sampler.sampling.ops.workspace import Workspace
from qr_sampler.sampling.request_table import RequestTable, distinct
from qr_sampler.sampling.row_amplifiers import RowAmplifiers
from qr_sampler.sampling.selection import select_tokens
from qr_sampler.sampling.shared_u import SharedU
from qr_sampler.sampling.temperature import RowTemperatures
from qr_sampler.sampling.unsampled import UnsampledRows
from qr_sampler.settings.base import env_file_path
from qr_sampler.settings.config import (
    GREEDY_BELOW,
    QRSamplerConfig,
    SamplingOptions,
    check_registered,
    resolve_options,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_ACTIVE = RequestTable.column("active")
_RECORD = RequestTable.column("record")
_SAMPLE_COUNT = RequestTable.column("sample_count")
_STRATEGY = RequestTable.column("temperature_strategy")
_ARM = RequestTable.column("arm")
_TOP_K = RequestTable.column("top_k")
_TOP_P = RequestTable.column("top_p")
_MIN_P = RequestTable.column("min_p")
_TEMPERATURE = RequestTable.column("fixed_temperature")
_PENALTY_NAMES = ("repetition_penalty", "frequency_penalty", "presence_penalty")
_PENALTIES = [RequestTable.column(name) for name in _PENALTY_NAMES]
#: The penalty columns' values that change nothing.
_NO_PENALTY = np.array([1.0, 0.0, 0.0])


class QRSampler:
    """Chooses the token of every active row from fresh entropy."""

    def __init__(
        self,
        config: QRSamplerConfig | None = None,
        registry: Registry | None = None,
        source: FallbackEntropySource | None = None,
        shared_u: SharedU | None = None,
        *,
        dp_rank: int = 0,
        samples: bool = True,
        engine: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        """``dp_rank``: the engine process's data-parallel rank (its own files, request
        ids and arm assignments); ``samples`` False: a pipeline stage that never samples,
        which opens no source and no file; ``engine``: what the engine adapter tells
        the run manifest (vLLM's version and runner, the model), asked for only when
        records are written."""
        self.config = config if config is not None else QRSamplerConfig.load()
        self.registry = registry if registry is not None else get_registry()
        self.defaults = self.config.sampling_options()
        check_registered(
            self.defaults, self.registry.amplifiers, self.registry.temperature_strategies, "QR_"
        )
        #: Set under tensor parallelism: only the leader draws, and records.
        self.shared_u = shared_u
        self.samples = samples
        self.draws = samples and (shared_u is None or shared_u.leader)
        self.dp_rank = dp_rank
        # Opened first, so a records file that cannot be written stops start-up before
        # any connection to an entropy source is made. Only the drawing rank records.
        log_path = engine_path(self.config.log_path, dp_rank) if self.draws else ""
        signing = self.config.signing_key if log_path else ""
        self.sink = RecordSink(
            log_path,
            signer=Signer.from_file(signing) if signing else None,
            head_interval_s=self.config.chain_head_interval_s,
            rotate_bytes=round(self.config.log_rotate_mb * 1_000_000),
        )
        # A follower never draws, so it never connects to the entropy sources either.
        self.arms = ArmSet.from_config(self.config, self.registry, self.draws, source)
        self.table = RequestTable(
            {
                "signal_amplifier_type": self.registry.amplifiers,
                "temperature_strategy": self.registry.temperature_strategies,
                "arm": self.arms.choices,
            }
        )
        self.arms.bind(self.table.choice_names["arm"])
        self.arms.separate_engine(dp_rank)
        if log_path:
            self.sink.begin_run(
                run_manifest(
                    self.config,
                    self.registry,
                    self.arms,
                    dp_rank,
                    env_file_path(),
                    engine() if engine is not None else None,
                )
            )
        names = self.table.choice_names
        self.amplifiers = RowAmplifiers(
            [self.registry.amplifiers[name].value for name in names["signal_amplifier_type"]]
        )
        self.temperatures = RowTemperatures(
            [
                self.registry.temperature_strategies[name].value
                for name in names["temperature_strategy"]
            ]
        )
        #: Where each step's records go; an engine adapter that only later learns
        #: which sampled tokens the engine kept puts a holding stage here.
        self.emit = self.sink.write_step
        #: Strict mode: the token that ends a request whose entropy did not come
        #: (the model's EOS); None makes the outage raise instead.
        self.end_token_id: int | None = None
        archive_path = engine_path(self.config.bytes_path, dp_rank) if self.draws else ""
        self.archive = BytesArchive(archive_path) if archive_path else None
        self.request_ids = RequestIds(dp_rank)
        self.summary = SummaryLog(enabled=self.config.log_level != "none")
        self.workspace = Workspace()
        self.unsampled = UnsampledRows()
        self.steps = 0
        #: The records part of the step being sampled (``RecordSink.next_part``).
        self._part = self.sink.next_part
        #: Whether penalties are applied here: an engine that applies them before
        #: its logits processors (Model Runner V2) turns this off.
        self.applies_penalties = True
        #: The policy records name: the requests' own parameters, or the server's.
        self.policy = self.config.sampling_policy
        strategies = self.table.choice_names["temperature_strategy"]
        self._greedy_strategy = strategies.index("fixed") if "fixed" in strategies else -1

    def resolve(
        self, extra_args: Mapping[str, Any] | None, standard: Mapping[str, Any] | None = None
    ) -> SamplingOptions:
        """A request's options, arm settled; ``ConfigValidationError`` for bad ``qr_*``.
        ``standard`` holds the request's own sampling parameters by option name; they
        apply under ``QR_SAMPLING_POLICY=request``."""
        options = resolve_options(
            self.defaults,
            extra_args,
            self.registry.amplifiers,
            self.registry.temperature_strategies,
            standard if self.policy == "request" else None,
        )
        self.arms.policy.check(extra_args)
        return self.arms.admit(options)

    def admit(
        self,
        slot: int,
        options: SamplingOptions,
        output: Sequence[int] | None = None,
        prompt: Sequence[int] | None = None,
    ) -> None:
        """Seat a newly admitted request in ``slot`` under a fresh request id; ``output``
        is the engine's list of its output tokens, if it keeps one (see ``Origin``),
        and ``prompt`` its prompt's, which the repetition penalty reads."""
        repeats = prompt is not None and options.repetition_penalty != 1.0
        prompt_ids = np.asarray(prompt, dtype=np.int64) if repeats else None
        # A replay by records gives the request the id of the run's request it replays.
        request_id = self.arms.claim(options) or self.request_ids.new()
        self.table.put(slot, options, Origin(request_id, output), prompt_ids)

    def output_of(self, slot: int) -> Sequence[int] | None:
        """The engine's output-token list of the request in ``slot``, if it keeps one."""
        origin = self.table.origins[slot]
        return origin.output if origin is not None else None

    def sample(
        self,
        logits: torch.Tensor,
        slots: npt.NDArray[np.int64],
        *,
        emitting: npt.NDArray[np.bool_] | None = None,
        positions: npt.NDArray[np.int64] | None = None,
    ) -> torch.Tensor:
        """Force one token into every active row of ``logits`` (in place) and return it.

        ``slots[i]`` is the table slot of logits row ``i``; ``positions[i]``, where the
        engine says, the index in its request's output of the token row ``i`` samples.
        Entropy is fetched here, after the logits exist, in a single draw for all rows.
        Rows where ``emitting`` is False (the engine will discard their sample) are
        left alone: no entropy, no record.
        """
        if not self.samples:
            raise RuntimeError(
                "qr-sampler was asked to sample on a pipeline stage that has no logits to "
                "sample; only vLLM's last pipeline stage samples"
            )
        start = time.perf_counter()
        params = self.table.gather(slots, emitting)
        if positions is not None:  # only Model Runner V2 needs the batch noted
            self.table.note_batch(slots, positions, emitting)
        active = params[:, _ACTIVE] > 0
        if not active.any():
            return logits
        self.steps += 1
        # Read once: all of the step's records and its bytes go to parts of this number.
        self._part = self.sink.next_part
        # A greedy row (a fixed temperature below vLLM's threshold) takes its argmax:
        # no entropy is drawn for it.
        drawing = active & ~(
            (params[:, _STRATEGY] == self._greedy_strategy)
            & (params[:, _TEMPERATURE] < GREEDY_BELOW)
        )
        draw = self._draw(params, drawing, logits, slots, positions)
        if draw is not None and draw.failures:
            ended = self._end_failed_rows(logits, slots, params, drawing, positions, draw)
            active, drawing = active & ~ended, drawing & ~ended
            if not active.any():
                return logits
        amplified = self.amplifiers.amplify(draw, params, drawing) if draw is not None else None
        columns = self._to_device(amplified, params, logits.device)
        recorded = self._recorded(params, active) if draw is not None else []
        chosen_from, unpenalize = self._penalized(logits, slots, params, active, columns)
        selection = self._select(chosen_from, columns, params, active, with_records=bool(recorded))
        results = HostCopy(_record_results(selection)) if recorded else None
        active_rows = columns["active"].bool()
        forced = active_rows & selection.valid
        force_tokens(logits, forced, selection.token_id)
        unpenalize(forced)
        self.unsampled.add(active_rows & ~selection.valid)
        if draw is not None and amplified is not None:
            self._hand_over(slots, positions, active, recorded, draw, amplified, results, start)
        return logits

    def _hand_over(
        self,
        slots: npt.NDArray[np.int64],
        positions: npt.NDArray[np.int64] | None,
        active: npt.NDArray[np.bool_],
        recorded: list[int],
        draw: StepDraw,
        amplified: Amplified,
        results: HostCopy | None,
        start: float,
    ) -> None:
        """Archive the step's bytes, pass its records on and count it in the summary.
        The step's bytes and records go to parts of one number (``records.parts``)."""
        archived_at = self.archive.append(draw.data, self._part) if self.archive else None
        if results is not None:
            facts = StepFacts(
                self.steps,
                self.policy,
                recorded,
                [self.table.options[slots[row]] for row in recorded],
                self.table.identities(slots, recorded, positions),
                draw,
                amplified,
                results,
                archived_at,
                (time.perf_counter() - start) * 1000.0,
                self.dp_rank,
            )
            step = step_records(facts)
            step.part = self._part
            self.emit(step)
        self.summary.add_step(
            int(active.sum()), draw.fallback_tokens(active), draw.fetch_ms, draw.health_failures
        )

    def _draw(
        self,
        params: npt.NDArray[np.float64],
        active: npt.NDArray[np.bool_],
        logits: torch.Tensor,
        slots: npt.NDArray[np.int64],
        positions: npt.NDArray[np.int64] | None,
    ) -> StepDraw | None:
        """One draw per arm for its active rows; nothing on a follower. In strict mode
        (single rank) an arm whose source stays down is reported in the draw, not raised."""
        if not self.draws:
            return None
        counts = np.where(active, params[:, _SAMPLE_COUNT], 0).astype(np.int64)
        strict_end = self.shared_u is None and self.end_token_id is not None
        # Only a replay by records needs to know whose token each row samples.
        tokens = (
            self.table.identities(slots, list(range(len(slots))), positions, recorded=False)
            if self.arms.by_token
            else None
        )
        try:
            return self.arms.draw(params[:, _ARM], counts, keep_going=strict_end, tokens=tokens)
        except EntropyUnavailableError:
            if self.shared_u is not None:
                self.shared_u.fail(len(params), logits.device)
            raise

    def _penalized(
        self,
        logits: torch.Tensor,
        slots: npt.NDArray[np.int64],
        params: npt.NDArray[np.float64],
        active: npt.NDArray[np.bool_],
        columns: DeviceColumns,
    ) -> tuple[torch.Tensor, Callable[[torch.Tensor], None]]:
        """The logits the token is chosen from, with each active row's penalties applied
        where this engine leaves penalties to its logits processors, and what undoes
        them in the rows that end up not forced (given the forced rows): rows left to
        vLLM must reach it untouched. Rows without penalties cost nothing."""
        if not self.applies_penalties:
            return logits, _nothing_to_undo
        rows = np.flatnonzero(active & (params[:, _PENALTIES] != _NO_PENALTY).any(axis=1))
        if len(rows) == 0:
            return logits, _nothing_to_undo
        import torch

        prompt, output = self.table.token_history(slots, rows, logits.shape[-1])
        device = logits.device
        on_device = torch.from_numpy(rows).to(device)
        # vLLM hands processors float32 logits; anything else is penalized in a copy.
        in_place = logits.dtype == torch.float32 and logits.is_contiguous()
        values = logits if in_place else logits.float().contiguous()
        penalized = apply_penalties(
            values,
            on_device,
            torch.from_numpy(prompt).to(device),
            torch.from_numpy(output).to(device),
            torch.stack([columns[name] for name in _PENALTY_NAMES], dim=1)[on_device],
        )
        if not in_place:
            return values, _nothing_to_undo
        return values, lambda forced: penalized.undo(values, forced[on_device])

    def _to_device(
        self, amplified: Amplified | None, params: npt.NDArray[np.float64], device: torch.device
    ) -> DeviceColumns:
        """The step's only host-to-device copy: u and the rows' options together; under
        tensor parallelism every rank then takes the leader's u."""
        import torch

        u = amplified.u if amplified is not None else np.full(len(params), math.nan)
        on_device = torch.from_numpy(np.column_stack([u, params])).to(device)
        if self.shared_u is None:
            return DeviceColumns(on_device, on_device[:, 0])
        return DeviceColumns(on_device, self.shared_u.share(on_device[:, 0]))

    def _recorded(self, params: npt.NDArray[np.float64], rows: npt.NDArray[np.bool_]) -> list[int]:
        """Those of ``rows`` whose token is recorded: to the file, the log, or memory."""
        recorded = rows & ((params[:, _RECORD] > 0) | bool(self.sink.log_path))
        listed: list[int] = np.flatnonzero(recorded).tolist()
        return listed

    def _select(
        self,
        logits: torch.Tensor,
        columns: DeviceColumns,
        params: npt.NDArray[np.float64],
        active: npt.NDArray[np.bool_],
        with_records: bool,
    ) -> Selection:
        """Every row's token under its own temperature, top-k and top-p. What the rows
        need is known here, on the host; asking the device would wait."""
        vocab = logits.shape[-1]
        strategy_ids = distinct(params[active, _STRATEGY])
        top_k, top_p = params[active, _TOP_K], params[active, _TOP_P]
        return select_tokens(
            logits,
            columns.u,
            lambda entropy: self.temperatures.temperatures(columns, entropy, strategy_ids, vocab),
            columns["top_k"].long() if ((top_k > 0) & (top_k < vocab)).any() else None,
            columns["top_p"] if (top_p < 1).any() else None,
            columns["min_p"] if (params[active, _MIN_P] > 0).any() else None,
            with_entropy=with_records or self.temperatures.needs_entropy(strategy_ids),
            workspace=self.workspace,
        )

    def _end_failed_rows(
        self,
        logits: torch.Tensor,
        slots: npt.NDArray[np.int64],
        params: npt.NDArray[np.float64],
        active: npt.NDArray[np.bool_],
        positions: npt.NDArray[np.int64] | None,
        draw: StepDraw,
    ) -> npt.NDArray[np.bool_]:
        """Strict mode, an arm's source still down: force ``end_token_id`` into that
        arm's drawing rows (``active``); the other rows are sampled as usual. Returns
        the rows ended.

        A logits processor cannot abort a request, but it can choose its last token:
        the request ends as if the model had stopped, no token is chosen by any
        other source, and the record and log line say why.
        """
        assert self.end_token_id is not None
        ended = draw.failed_rows(active)
        end_rows(logits, ended, self.end_token_id)
        for arm, exc in draw.failures.items():
            logger.error(
                "strict mode: ended %d request(s) of arm %r with the end-of-sequence token, "
                "no entropy: %s",
                int(np.count_nonzero(ended & (draw.row_arm == arm))),
                draw.arms[arm].label,
                exc,
            )
        recorded = self._recorded(params, ended)
        options = [self.table.options[slots[row]] for row in recorded]
        identities = self.table.identities(slots, recorded, positions)
        step = ended_step_records(
            self.steps, recorded, options, identities, draw, self.end_token_id, self.dp_rank
        )
        step.part = self._part
        self.emit(step)
        params[ended, _ACTIVE] = 0.0
        return ended

    def close(self) -> None:
        self.unsampled.read()
        self.sink.close()
        if self.archive is not None:
            self.archive.close()
        self.arms.close()


def _nothing_to_undo(forced: torch.Tensor) -> None:
    """No penalties were written into the engine's logits."""


def _record_results(selection: Selection) -> torch.Tensor:
    """What records need of each row (``RESULT_FIELDS``) as one small tensor, never
    the logits. Ranks are read from the logits as they were: call before forcing."""
    import torch

    assert selection.entropy is not None
    rank, candidates = selection.ranks()
    by_name = {
        "token_id": selection.token_id,
        "token_rank": rank,
        "token_prob": selection.prob,
        "cdf_low": selection.cdf_low,
        "num_candidates": candidates,
        "temperature": selection.temperature,
        "shannon_entropy": selection.entropy,
        "valid": selection.valid,
    }
    return torch.stack([by_name[name].double() for name in RESULT_FIELDS])
