"""One engine step: fetch entropy, amplify to u, select and force a token per row.

Engine-agnostic; the vLLM adapter maps its requests to slots of ``table`` and
calls ``sample`` with the slot of every logits row.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from qr_sampler.amplification import Amplified, SignalAmplifier
from qr_sampler.arms import ArmSet, StepDraw
from qr_sampler.bytes_archive import BytesArchive
from qr_sampler.config import QRSamplerConfig, SamplingOptions, check_registered, resolve_options
from qr_sampler.entropy.fallback import FallbackEntropySource
from qr_sampler.errors import EntropyUnavailableError
from qr_sampler.host_copy import HostCopy
from qr_sampler.plugins import Registry, get_registry
from qr_sampler.provenance import Origin, RequestIds, sha256_hex
from qr_sampler.records import RecordSink, StepRecords, SummaryLog, TokenRecord, ended_record
from qr_sampler.request_table import COLUMNS, NUMERIC_FIELDS, RequestTable, distinct
from qr_sampler.selection import Selection, Workspace, force_tokens, select_tokens
from qr_sampler.temperature import TemperatureStrategy
from qr_sampler.tensor_parallel import SharedU
from qr_sampler.unsampled import UnsampledRows

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_ACTIVE = RequestTable.column("active")
_RECORD = RequestTable.column("record")
_SAMPLE_COUNT = RequestTable.column("sample_count")
_AMPLIFIER = RequestTable.column("signal_amplifier_type")
_STRATEGY = RequestTable.column("temperature_strategy")
_ARM = RequestTable.column("arm")
_TOP_K = RequestTable.column("top_k")
_TOP_P = RequestTable.column("top_p")


class QRSampler:
    """Chooses the token of every active row from fresh entropy."""

    def __init__(
        self,
        config: QRSamplerConfig | None = None,
        registry: Registry | None = None,
        source: FallbackEntropySource | None = None,
        shared_u: SharedU | None = None,
    ) -> None:
        self.config = config if config is not None else QRSamplerConfig.load()
        self.registry = registry if registry is not None else get_registry()
        self.defaults = self.config.sampling_options()
        check_registered(
            self.defaults, self.registry.amplifiers, self.registry.temperature_strategies, "QR_"
        )
        #: Set under tensor parallelism: only the leader draws, and records.
        self.shared_u = shared_u
        self.draws = shared_u is None or shared_u.leader
        # Opened first, so a records file that cannot be written stops start-up before
        # any connection to an entropy source is made. Only the drawing rank records.
        self.sink = RecordSink(self.config.log_path if self.draws else "")
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
        names = self.table.choice_names
        self._amplifiers: list[SignalAmplifier] = [
            self.registry.amplifiers[name].value for name in names["signal_amplifier_type"]
        ]
        self._strategies: list[TemperatureStrategy] = [
            self.registry.temperature_strategies[name].value
            for name in names["temperature_strategy"]
        ]
        #: Where each step's records go; an engine adapter that only later learns
        #: which sampled tokens the engine kept puts a holding stage here.
        self.emit = self.sink.write_step
        #: Strict mode: the token that ends a request whose entropy did not come
        #: (the model's EOS); None makes the outage raise instead.
        self.end_token_id: int | None = None
        self.archive = BytesArchive(self.config.bytes_path) if self.config.bytes_path else None
        self.request_ids = RequestIds()
        self.summary = SummaryLog(enabled=self.config.log_level != "none")
        self.workspace = Workspace()
        self.unsampled = UnsampledRows()
        self.steps = 0

    def resolve(self, extra_args: Mapping[str, Any] | None) -> SamplingOptions:
        """A request's options, arm settled; ``ConfigValidationError`` for bad ``qr_*``."""
        options = resolve_options(
            self.defaults,
            extra_args,
            self.registry.amplifiers,
            self.registry.temperature_strategies,
        )
        self.arms.policy.check(extra_args)
        return self.arms.admit(options)

    def admit(self, slot: int, options: SamplingOptions, output: Sized | None = None) -> None:
        """Seat a newly admitted request in ``slot`` under a fresh request id; ``output``
        is the engine's list of its output tokens, if it keeps one (see ``Origin``)."""
        self.table.put(slot, options, Origin(self.request_ids.new(), output))

    def output_of(self, slot: int) -> Sized | None:
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
        import torch

        start = time.perf_counter()
        params = self.table.gather(slots)
        if emitting is not None:
            params[~emitting, _ACTIVE] = 0.0
        active = params[:, _ACTIVE] > 0
        if not active.any():
            return logits
        self.steps += 1
        try:
            draw = self._draw(params, active)
        except EntropyUnavailableError:
            if self.shared_u is not None:
                # NaN tells the other ranks to fail too, instead of waiting forever.
                self.shared_u.broadcast(torch.full((len(slots),), math.nan, device=logits.device))
            raise
        if draw is not None and draw.failures:
            ended = draw.failed_rows(active)
            self._end_rows(logits, slots, params, ended, positions, draw)
            params[ended, _ACTIVE] = 0.0
            active &= ~ended
            if not active.any():
                return logits
        amplified = self._amplify(draw, params, active) if draw is not None else None
        u_host = amplified.u if amplified is not None else np.full(len(slots), math.nan)
        archived_at = self.archive.append(draw.data) if self.archive and draw else None

        # The step's only host-to-device copy: u and the rows' options together.
        on_device = torch.from_numpy(np.column_stack([u_host, params])).to(logits.device)
        u = on_device[:, 0]
        columns = _Columns(on_device)
        if self.shared_u is not None:
            u = u.contiguous()  # broadcast fills the tensor in place
            self.shared_u.broadcast(u)
            if bool(u.isnan().any()):
                raise EntropyUnavailableError(
                    "the entropy source failed on the tensor-parallel leader (rank "
                    f"{self.shared_u.leader_rank}); its log says why"
                )

        # Rows whose token must be recorded: to the file, the log, or memory. Only the
        # rank that drew the bytes records, so each token is recorded once.
        recorded = active & ((params[:, _RECORD] > 0) | bool(self.sink.log_path))
        wanted = np.flatnonzero(recorded).tolist() if draw is not None else []
        strategy_ids = distinct(params[active, _STRATEGY])
        vocab = logits.shape[-1]

        def temperatures(entropy: torch.Tensor | None) -> torch.Tensor:
            return self._temperatures(columns, entropy, strategy_ids, vocab)

        # What the rows need is known here, on the host; asking the device would wait.
        top_k, top_p = params[active, _TOP_K], params[active, _TOP_P]
        needs_entropy = bool(wanted) or any(self._strategies[i].needs_entropy for i in strategy_ids)
        selection = select_tokens(
            logits,
            u,
            temperatures,
            columns["top_k"].long() if ((top_k > 0) & (top_k < vocab)).any() else None,
            columns["top_p"] if (top_p < 1).any() else None,
            with_entropy=needs_entropy,
            workspace=self.workspace,
        )
        # Ranks are read from the logits as they were, so before forcing.
        results = HostCopy(self._per_row_results(selection)) if wanted else None
        active_rows = columns["active"].bool()
        force_tokens(logits, active_rows & selection.valid, selection.token_id)
        self.unsampled.add(active_rows & ~selection.valid)
        if draw is not None and amplified is not None:
            if results is not None:
                where = _Where(draw.offsets, positions, archived_at)
                self._hand_over(wanted, slots, params, amplified, draw, results, start, where)
            self.summary.add_step(
                int(active.sum()), draw.fallback_tokens(active), draw.fetch_ms, draw.health_failures
            )
        return logits

    def _draw(
        self, params: npt.NDArray[np.float64], active: npt.NDArray[np.bool_]
    ) -> StepDraw | None:
        """One draw per arm for its active rows; nothing on a follower. In strict mode
        (single rank) an arm whose source stays down is reported in the draw, not raised."""
        if not self.draws:
            return None
        counts = np.where(active, params[:, _SAMPLE_COUNT], 0).astype(np.int64)
        strict_end = self.shared_u is None and self.end_token_id is not None
        return self.arms.draw(params[:, _ARM], counts, keep_going=strict_end)

    def _amplify(
        self, draw: StepDraw, params: npt.NDArray[np.float64], active: npt.NDArray[np.bool_]
    ) -> Amplified:
        data = np.frombuffer(draw.data, dtype=np.uint8)
        offsets, counts = draw.offsets, draw.counts
        rows = params.shape[0]
        # Inactive rows get u = 0.5 as a placeholder; they are never forced.
        u, z, mean = np.full(rows, 0.5), np.zeros(rows), np.zeros(rows)
        for amplifier_id in distinct(params[active, _AMPLIFIER]):
            mask = active & (params[:, _AMPLIFIER] == amplifier_id)
            columns = _HostColumns(params[mask])
            out = self._amplifiers[amplifier_id].amplify(data, offsets[mask], counts[mask], columns)
            u[mask], z[mask], mean[mask] = out.u, out.z_score, out.sample_mean
        return Amplified(u=u, z_score=z, sample_mean=mean)

    def _temperatures(
        self,
        columns: Mapping[str, torch.Tensor],
        entropy: torch.Tensor | None,
        strategy_ids: npt.NDArray[np.int64],
        vocab_size: int,
    ) -> torch.Tensor:
        import torch

        if len(strategy_ids) == 1:
            # Every active row has this strategy; the other rows are not forced.
            strategy = self._strategies[int(strategy_ids[0])]
            return strategy.temperatures(columns, entropy, vocab_size)
        strategy_column = columns["temperature_strategy"]
        temperature = torch.ones_like(strategy_column)
        for strategy_id in strategy_ids:
            strategy = self._strategies[strategy_id]
            values = strategy.temperatures(columns, entropy, vocab_size).to(temperature.dtype)
            temperature = torch.where(strategy_column == strategy_id, values, temperature)
        return temperature

    @staticmethod
    def _per_row_results(selection: Selection) -> torch.Tensor:
        """The per-row results records need, as one small tensor; never the logits."""
        import torch

        assert selection.entropy is not None
        rank, candidates = selection.ranks()
        columns = (selection.token_id, rank, selection.prob, candidates, selection.temperature)
        return torch.stack([c.double() for c in (*columns, selection.entropy, selection.valid)])

    def _hand_over(
        self,
        rows: list[int],
        slots: npt.NDArray[np.int64],
        params: npt.NDArray[np.float64],
        amplified: Amplified,
        draw: StepDraw,
        results: HostCopy,
        start: float,
        where: _Where,
    ) -> None:
        """Pass the step's records to the sink: what changes after this step (the
        request table, output lists) is read now; the records are built later."""
        options = [self.table.options[slots[row]] for row in rows]
        identities = [self._identity(int(slots[row]), row, where.positions) for row in rows]
        step, total_ms = self.steps, (time.perf_counter() - start) * 1000.0

        def build() -> list[TokenRecord | None]:
            token_id, rank, prob, candidates, temp, entropy, valid = results.numpy()
            built: list[TokenRecord | None] = []
            for row, option, (request_id, position) in zip(rows, options, identities, strict=True):
                if not valid[row] or option is None:
                    built.append(None)
                    continue
                arm, row_draw = draw.for_row(row)
                first, count = int(where.offsets[row]), int(params[row, _SAMPLE_COUNT])
                built.append(
                    TokenRecord(
                        step=step,
                        row=row,
                        u=float(amplified.u[row]),
                        z_score=float(amplified.z_score[row]),
                        sample_mean=float(amplified.sample_mean[row]),
                        sample_count=count,
                        token_id=int(token_id[row]),
                        token_rank=int(rank[row]),
                        token_prob=float(prob[row]),
                        num_candidates=int(candidates[row]),
                        temperature=float(temp[row]),
                        shannon_entropy=float(entropy[row]),
                        entropy_source=row_draw.source,
                        fallback=row_draw.fallback,
                        fetch_ms=row_draw.fetch_ms,
                        total_ms=total_ms,
                        config_hash=option.config_hash,
                        tag=option.tag,
                        request_id=request_id,
                        position=position,
                        entropy_sha256=sha256_hex(memoryview(draw.data)[first : first + count]),
                        bytes_offset=where.archived_at + first
                        if where.archived_at is not None
                        else None,
                        signal_amplifier_type=option.signal_amplifier_type,
                        population_mean=option.population_mean,
                        population_std=option.population_std,
                        uniform_clamp_epsilon=option.uniform_clamp_epsilon,
                        arm=arm.label,
                        fallback_reason=row_draw.fallback_reason,
                        prng_seed=None if row_draw.fallback else arm.seed,
                    )
                )
            return built

        self.emit(StepRecords(rows, [position for _, position in identities], options, build))

    def _identity(
        self, slot: int, row: int, positions: npt.NDArray[np.int64] | None
    ) -> tuple[str | None, int | None]:
        """The request id of ``slot`` and the output index of the token row ``row`` samples:
        from the engine where it says, else from the request's own output list."""
        origin = self.table.origins[slot]
        if positions is not None:
            position: int | None = int(positions[row])
        else:
            position = origin.next_position() if origin is not None else None
        return (origin.request_id if origin is not None else None), position

    def _end_rows(
        self,
        logits: torch.Tensor,
        slots: npt.NDArray[np.int64],
        params: npt.NDArray[np.float64],
        ended: npt.NDArray[np.bool_],
        positions: npt.NDArray[np.int64] | None,
        draw: StepDraw,
    ) -> None:
        """Strict mode, an arm's source still down: force ``end_token_id`` into that
        arm's rows (``ended``); the other arms' rows are sampled as usual.

        A logits processor cannot abort a request, but it can choose its last token:
        the request ends as if the model had stopped, no token is chosen by any
        other source, and the record and log line say why.
        """
        import torch

        assert self.end_token_id is not None
        token = torch.full((len(slots),), self.end_token_id, dtype=torch.long)
        rows = torch.from_numpy(ended).to(logits.device)
        # These rows were never checked for NaN, which forcing would keep.
        logits.masked_fill_(rows[:, None], float("-inf"))
        force_tokens(logits, rows, token.to(logits.device))
        for arm, exc in draw.failures.items():
            logger.error(
                "strict mode: ended %d request(s) of arm %r with the end-of-sequence token, "
                "no entropy: %s",
                int(np.count_nonzero(ended & (draw.row_arm == arm))),
                draw.arms[arm].label,
                exc,
            )
        records, recorded = [], []
        for row in np.flatnonzero(ended).tolist():
            if not (params[row, _RECORD] > 0 or self.sink.log_path):
                continue
            options = self.table.options[slots[row]]
            assert options is not None
            request_id, position = self._identity(int(slots[row]), row, positions)
            arm = int(draw.row_arm[row])
            records.append(
                ended_record(
                    self.steps,
                    row,
                    self.end_token_id,
                    options,
                    draw.failures[arm],
                    request_id,
                    position,
                    draw.arms[arm].label,
                )
            )
            recorded.append(options)
        self.emit(StepRecords.ready(records, recorded))

    def close(self) -> None:
        self.unsampled.read()
        self.sink.close()
        if self.archive is not None:
            self.archive.close()
        self.arms.close()


class _HostColumns(Mapping[str, "npt.NDArray[np.float64]"]):
    """Some rows' numeric options by field name, sliced out when read."""

    def __init__(self, rows: npt.NDArray[np.float64]) -> None:
        self._rows = rows

    def __getitem__(self, name: str) -> npt.NDArray[np.float64]:
        return self._rows[:, RequestTable.column(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(NUMERIC_FIELDS)

    def __len__(self) -> int:
        return len(NUMERIC_FIELDS)


class _Columns(Mapping[str, "torch.Tensor"]):
    """The rows' options on the device by field name; a column is sliced out of the
    step's one copy only when something reads it."""

    def __init__(self, on_device: torch.Tensor) -> None:
        self._on_device = on_device

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._on_device[:, RequestTable.column(name) + 1]

    def __iter__(self) -> Iterator[str]:
        return iter(COLUMNS)

    def __len__(self) -> int:
        return len(COLUMNS)


@dataclass(frozen=True)
class _Where:
    """Where each row's bytes sit in the step's draw and in the archive, and the
    positions the engine gave."""

    offsets: npt.NDArray[np.int64]
    positions: npt.NDArray[np.int64] | None
    archived_at: int | None
