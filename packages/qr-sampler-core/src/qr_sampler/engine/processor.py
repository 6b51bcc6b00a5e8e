"""The vLLM adapter: one logits processor class for both of vLLM's interfaces.

- V1 runner (vLLM <= 0.30 by default): ``__init__(vllm_config, device, is_pin_memory)``,
  ``update_state(batch_update)``, ``apply(logits)``; logits row i is batch index i.
- Model Runner V2 (vLLM >= 0.31 by default): ``__init__(vllm_config, req_states)``,
  ``add_request(slot, params)``, ``apply(logits, ctx)``; rows map to request slots
  through the context.

Both runners sample rows whose token vLLM then drops (a prompt prefilled in chunks
emits nothing until its last chunk). Model Runner V2's request state says which
rows those are, so they get no entropy; the V1 runner does not, so their records
are held back until vLLM books the token (``qr_sampler.engine.emission``).

The class subclasses every base that the installed vLLM provides, so either
loader accepts it. Importing this module never initialises CUDA.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from qr_sampler.engine.data_parallel import data_parallel_rank
from qr_sampler.engine.emission import EmissionGate
from qr_sampler.engine.model_identity import engine_facts
from qr_sampler.engine.pipeline_parallel import vllm_pipeline_stage
from qr_sampler.engine.preemption import Readmissions
from qr_sampler.engine.request_params import check_supported, standard_options
from qr_sampler.engine.runner_v2 import refilled, v2_rows
from qr_sampler.engine.tensor_parallel import vllm_tensor_parallel_group
from qr_sampler.errors import ConfigValidationError
from qr_sampler.experiments.arms import ArmPolicy
from qr_sampler.plugins.known_variables import unknown_in_effect
from qr_sampler.plugins.registry import get_registry
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.base import env_file_path
from qr_sampler.settings.config import QRSamplerConfig, SamplingOptions, resolve_options

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_V1_INTERFACE = "vllm.v1.sample.logits_processor"
_V2_INTERFACE = "vllm.v1.worker.gpu.sample.logits_processor.interface"

SPECULATIVE_DECODING_UNSUPPORTED = (
    "qr-sampler cannot run with speculative decoding: draft tokens would be accepted "
    "or rejected by vLLM's rejection sampler rather than chosen by entropy. Remove "
    "--speculative-config, or uninstall qr-sampler-core for this server."
)


def _engine_bases() -> tuple[type, ...]:
    bases = []
    for module in (_V1_INTERFACE, _V2_INTERFACE):
        try:
            bases.append(importlib.import_module(module).LogitsProcessor)
        except ImportError:
            continue
    return tuple(bases) or (object,)


def _extra_args(sampling_params: Any) -> Mapping[str, Any]:
    return getattr(sampling_params, "extra_args", None) or {}


@functools.cache
def _admission_config() -> QRSamplerConfig:
    """Server settings for ``validate_params``, which runs without an instance."""
    return QRSamplerConfig.load()


@functools.cache
def _admission_defaults() -> SamplingOptions:
    return _admission_config().sampling_options()


@functools.cache
def _admission_arms() -> ArmPolicy:
    return ArmPolicy.from_config(QRSamplerConfig.load())


def _end_token_id(vllm_config: Any) -> int | None:
    """The model's end-of-sequence token, which strict mode uses to end a request."""
    model_config = getattr(vllm_config, "model_config", None)
    eos = getattr(getattr(model_config, "hf_text_config", None), "eos_token_id", None)
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    return eos if isinstance(eos, int) else None


def _log_where_vllm_logs() -> None:
    """Give qr-sampler's loggers the handlers vLLM configured for its own.

    vLLM sets up handlers for the ``vllm`` logger only; without this, qr-sampler's
    INFO lines (the startup line, the periodic summary) would reach no handler.
    """
    ours, theirs = logging.getLogger("qr_sampler"), logging.getLogger("vllm")
    if ours.handlers or not theirs.handlers:
        return
    for handler in theirs.handlers:
        ours.addHandler(handler)
    # vLLM's logger does not propagate; ours must not either once it has the same
    # handlers, or a root handler (an embedding app's, pytest's) prints each line twice.
    ours.propagate = theirs.propagate
    if ours.level == logging.NOTSET:
        ours.setLevel(theirs.getEffectiveLevel())


class QRSamplerLogitsProcessor(*_engine_bases()):  # type: ignore[misc]
    """Forces the token chosen by qr-sampler into every row it samples."""

    def __init__(self, vllm_config: Any, *engine_args: Any) -> None:
        # No super().__init__(): the V1 base's __init__ is abstract and raises.
        if len(engine_args) not in (1, 2):
            raise TypeError(
                "expected (vllm_config, device, is_pin_memory) from the V1 runner or "
                "(vllm_config, req_states) from Model Runner V2"
            )
        if getattr(vllm_config, "speculative_config", None):
            raise ValueError(SPECULATIVE_DECODING_UNSUPPORTED)
        self.runner = "v1" if len(engine_args) == 2 else "v2"
        #: Model Runner V2's per-slot request state (prompt and prefill lengths); None on V1.
        self.req_states = engine_args[0] if self.runner == "v2" else None
        _log_where_vllm_logs()
        stage, stages = vllm_pipeline_stage()
        samples = stage == stages - 1
        dp_rank = data_parallel_rank(vllm_config)
        self.sampler = QRSampler(
            shared_u=vllm_tensor_parallel_group() if samples else None,
            dp_rank=dp_rank,
            samples=samples,
            # Called only when a manifest is written: hashing large weights takes a while.
            engine=functools.partial(engine_facts, vllm_config, self.runner),
        )
        # Model Runner V2 applies penalties (and logit bias) before custom logits
        # processors, the V1 runner after them.
        self.sampler.applies_penalties = self.runner == "v1"
        for variable in unknown_in_effect(self.sampler.registry, env_file_path()):
            logger.warning("qr-sampler ignores %s", variable.message())
        config = self.sampler.config
        #: Preempted requests come back as they were (id, arm, options, positions).
        self.readmissions = Readmissions()
        #: V1: holds each step's records until vLLM shows which sampled tokens it kept.
        self.gate = EmissionGate(self.sampler.emit, self.sampler.output_of)
        if self.runner == "v1":
            self.sampler.emit = self.gate.hold
        if config.fallback_mode == "error":
            self.sampler.end_token_id = _end_token_id(vllm_config)
            if self.sampler.end_token_id is None:
                logger.warning(
                    "strict mode: the model declares no eos_token_id, so an entropy outage "
                    "longer than QR_STRICT_WAIT_S stops the engine instead of ending requests"
                )
        if not samples:
            logger.info(
                "qr-sampler idle on pipeline stage %d of %d: only the last stage samples, "
                "so this one opens no entropy source and writes no records",
                stage + 1,
                stages,
            )
            return
        arms = self.sampler.arms.policy.arms
        # Every worker says where it stands, so a multi-node log shows each one's source.
        where = [f"{self.runner} runner"]
        if dp_rank:
            where.append(f"data-parallel rank {dp_rank}")
        if not self.sampler.draws:
            where.append("tensor-parallel follower: takes the leader's u")
        logger.info(
            "qr-sampler active (%s): %s, fallback %s, amplifier %s, sampling parameters: %s",
            ", ".join(where),
            # With QR_ARMS, QR_ENTROPY_SOURCE_TYPE chooses nothing: name what does.
            f"arms {', '.join(f'{name}={source}' for name, source in arms)}"
            if config.arms
            else f"entropy source {config.entropy_source_type!r}",
            config.fallback_mode,
            config.signal_amplifier_type,
            "each request's own"
            if config.sampling_policy == "request"
            else f"the server's (QR_SAMPLING_POLICY=server; temperature "
            f"{config.temperature_strategy})",
        )

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Reject bad ``qr_*`` keys or values, and what the plugin cannot honour, at
        admission (vLLM answers HTTP 400)."""
        registry = get_registry()
        options = resolve_options(
            _admission_defaults(),
            _extra_args(sampling_params),
            registry.amplifiers,
            registry.temperature_strategies,
            standard_options(sampling_params)
            if _admission_config().sampling_policy == "request"
            else None,
        )
        check_supported(sampling_params, options.bypass)
        _admission_arms().check(_extra_args(sampling_params))

    def is_argmax_invariant(self) -> bool:
        # Forcing a token changes the argmax: greedy requests must see it too.
        return False

    def _admit(
        self,
        slot: int,
        sampling_params: Any,
        output: list[int] | None = None,
        prompt: list[int] | None = None,
    ) -> bool:
        try:
            options = self.sampler.resolve(
                _extra_args(sampling_params), standard_options(sampling_params)
            )
            check_supported(sampling_params, options.bypass)
        except ConfigValidationError as exc:
            # validate_params normally refuses such a request at admission; if one
            # slips through, leave it to vLLM loudly rather than kill the engine.
            logger.error("request in slot %d left to vLLM's sampler: %s", slot, exc)
            self.sampler.table.clear(slot)
            return False
        self.sampler.admit(slot, options, output, prompt)
        return not options.bypass

    # V1 runner -------------------------------------------------------------

    def update_state(self, batch_update: Any) -> None:
        # vLLM booked the last step's tokens before this call and still holds the
        # output lists of requests it is about to remove.
        self.gate.settle()
        if batch_update is None:
            return
        table = self.sampler.table
        # vLLM's contract: removed, then added, then moved.
        for index in batch_update.removed:
            self.readmissions.left(table, index)
            table.clear(index)
        for index, params, prompt_ids, output_ids in batch_update.added:
            # A request added where one was removed in the same update takes its index
            # off the removed list: the one there has left all the same.
            self.readmissions.left(table, index)
            # vLLM extends output_ids after every step: its length is the position, and
            # the emission gate reads it to see which sampled tokens vLLM kept. The
            # penalties read it and the prompt.
            if not self.readmissions.resume(table, index, params, output_ids):
                self._admit(index, params, output_ids, prompt_ids)
                self.readmissions.remember(table, index, params)
        for first, second, direction in batch_update.moved:
            if direction.name == "SWAP":
                table.swap(first, second)
            else:
                # Condensing the batch fills a removed request's index and takes it off
                # the removed list: the request there has left.
                self.readmissions.left(table, second)
                table.move(first, second)

    # Model Runner V2 -------------------------------------------------------

    def add_request(self, req_idx: int, sampling_params: Any) -> bool:
        table = self.sampler.table
        back_with = refilled(self.req_states, req_idx)
        if self.readmissions.resume(table, req_idx, sampling_params, refilled=back_with):
            options = table.options[req_idx]
            return options is not None and not options.bypass
        admitted = self._admit(req_idx, sampling_params)
        self.readmissions.remember(table, req_idx, sampling_params)
        return admitted

    def apply_staged_writes(self) -> None:
        """Nothing to stage: per-request options stay on the host until ``apply``."""

    # Both ------------------------------------------------------------------

    def apply(self, logits: torch.Tensor, ctx: Any = None) -> torch.Tensor:
        if ctx is None:
            return self.sampler.sample(logits, np.arange(logits.shape[0], dtype=np.int64))
        slots = np.asarray(ctx.idx_mapping_np, dtype=np.int64)
        if slots.shape[0] != logits.shape[0]:
            raise RuntimeError(SPECULATIVE_DECODING_UNSUPPORTED)
        emitting, positions = v2_rows(self.req_states, slots, ctx)
        return self.sampler.sample(logits, slots, emitting=emitting, positions=positions)
