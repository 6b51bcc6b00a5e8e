"""Experiment arms: named entropy sources served side by side in one engine.

``QR_ARMS=qrng=quantum_grpc,control=prng`` gives each arm its own source instance,
its own fallback and its own health tests. Unset, there is one arm named after
``QR_ENTROPY_SOURCE_TYPE``. A request joins an arm by ``qr_arm`` (default: the first
arm), or, with ``QR_ARM_ASSIGNMENT=random``, the server assigns it at admission from
a generator seeded by ``QR_ARM_SEED``. Each step draws once per arm for all of that
arm's rows, so rows of different arms never share bytes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qr_sampler.entropy.base import TokenKey
from qr_sampler.entropy.factory import build_entropy_source
from qr_sampler.entropy.fallback import EntropyDraw, FallbackEntropySource
from qr_sampler.errors import ConfigValidationError, EntropyUnavailableError
from qr_sampler.plugins.registry import Registry
from qr_sampler.settings.arm_spec import parse_arms
from qr_sampler.settings.config import REQUEST_KEY_PREFIX, QRSamplerConfig, SamplingOptions

logger = logging.getLogger(__name__)

ARM_KEY = f"{REQUEST_KEY_PREFIX}arm"


@dataclass(frozen=True)
class ArmPolicy:
    """Which arms exist and who picks a request's arm; all admission needs to know."""

    arms: tuple[tuple[str, str], ...]
    random: bool

    @classmethod
    def from_config(cls, config: QRSamplerConfig) -> ArmPolicy:
        single = ((config.entropy_source_type, config.entropy_source_type),)
        arms = parse_arms(config.arms) or single
        return cls(arms, config.arm_assignment == "random")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.arms)

    def check(self, extra_args: Mapping[str, Any] | None) -> None:
        """``ConfigValidationError`` for a ``qr_arm`` the server cannot honour."""
        requested = (extra_args or {}).get(ARM_KEY)
        if requested is None:
            return
        if self.random:
            raise ConfigValidationError(
                f"{ARM_KEY} cannot be chosen by the request: this server assigns arms at "
                "random (QR_ARM_ASSIGNMENT=random); remove it from the request"
            )
        if str(requested) not in self.names:
            raise ConfigValidationError(
                f"{ARM_KEY}: unknown arm {requested!r}; this server's arms: {', '.join(self.names)}"
            )


@dataclass(frozen=True)
class Arm:
    name: str
    source_type: str
    #: What records carry: the name, or an opaque label under QR_BLIND_ARMS.
    label: str
    #: None on a tensor-parallel follower, which never draws.
    source: FallbackEntropySource | None

    @property
    def seed(self) -> int | None:
        """The seed of a seeded source (``prng``), for the records."""
        seed = getattr(self.source.primary, "seed", None) if self.source else None
        return seed if isinstance(seed, int) else None


@dataclass(frozen=True)
class StepDraw:
    """One step's bytes, laid out row after row, and which arm's draw served each row.

    ``data`` is what the bytes archive stores and what the records' hashes and
    offsets refer to: row ``i``'s bytes are ``data[offsets[i] : offsets[i] + counts[i]]``.
    """

    data: bytes
    arms: Sequence[Arm]
    draws: Mapping[int, EntropyDraw]
    row_arm: npt.NDArray[np.int64]
    #: Bytes per row in ``data``: none for an inactive row or a row of a failed arm.
    counts: npt.NDArray[np.int64]
    #: Strict mode: the arms whose source stayed down this step, with the error.
    failures: Mapping[int, EntropyUnavailableError]

    @functools.cached_property
    def offsets(self) -> npt.NDArray[np.int64]:
        return np.cumsum(self.counts) - self.counts

    def for_row(self, row: int) -> tuple[Arm, EntropyDraw]:
        arm = int(self.row_arm[row])
        return self.arms[arm], self.draws[arm]

    def failed_rows(self, active: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        return active & np.isin(self.row_arm, list(self.failures))

    def fallback_tokens(self, active: npt.NDArray[np.bool_]) -> int:
        fell_back = [arm for arm, draw in self.draws.items() if draw.fallback]
        if not fell_back:
            return 0
        return int(np.count_nonzero(active & np.isin(self.row_arm, fell_back)))

    @property
    def fetch_ms(self) -> float:
        return sum(draw.fetch_ms for draw in self.draws.values())

    @property
    def health_failures(self) -> int:
        return sum(draw.fallback_reason == "health test" for draw in self.draws.values())


class ArmSet:
    """The arms of one sampler: sources, labels and the assignment generator."""

    def __init__(
        self,
        policy: ArmPolicy,
        sources: Sequence[FallbackEntropySource | None],
        labels: Sequence[str],
        seed: int,
    ) -> None:
        self.policy = policy
        self.arms = tuple(
            Arm(name, source_type, label, source)
            for (name, source_type), label, source in zip(policy.arms, labels, sources, strict=True)
        )
        #: The names a request's ``arm`` may hold; "" stands for the first (default) arm.
        self.choices: dict[str, Arm] = {"": self.arms[0], **{arm.name: arm for arm in self.arms}}
        self._column_arm = np.arange(len(self.arms), dtype=np.int64)
        self.seed = seed
        self._assigner = np.random.Generator(np.random.PCG64(seed))
        #: Whether an arm serves its bytes token by token (a replay by records), so
        #: draws must say whose each row's bytes are.
        self.by_token = any(
            arm.source is not None and arm.source.token_bytes() is not None for arm in self.arms
        )

    def separate_engine(self, dp_rank: int) -> None:
        """Under data parallelism, give engine ``dp_rank`` an assignment sequence of its
        own: the same seed in every engine would assign the same "random" arms in
        each. Engine 0 keeps the single-engine sequence of ``QR_ARM_SEED``; engine r
        draws from the r-th child stream of it, reproducible from the seed and rank.

        Seeded sources likewise: every engine and every arm of one source type would
        otherwise draw the same bytes from one seed (two ``prng`` arms of
        ``QR_PRNG_SEED``, or the control arm of every engine). Engine 0's first arm of
        each type keeps its seed; the others draw from the ``(rank, arm)`` child."""
        if dp_rank:
            stream = np.random.SeedSequence(self.seed, spawn_key=(dp_rank,))
            self._assigner = np.random.Generator(np.random.PCG64(stream))
        first_of_type: set[str] = set()
        for index, arm in enumerate(self.arms):
            if arm.source is not None and (dp_rank or arm.source_type in first_of_type):
                arm.source.primary.separate((dp_rank, index))
            first_of_type.add(arm.source_type)

    @classmethod
    def from_config(
        cls,
        config: QRSamplerConfig,
        registry: Registry,
        draws: bool,
        source: FallbackEntropySource | None = None,
    ) -> ArmSet:
        """Build every arm's source when ``draws``; ``source`` serves a single arm as is."""
        policy = ArmPolicy.from_config(config)
        if source is not None and len(policy.arms) == 1:
            sources: list[FallbackEntropySource | None] = [source]
        else:
            # Unset QR_ARMS: the one arm is QR_ENTROPY_SOURCE_TYPE, and errors say so.
            sources = [
                build_entropy_source(config, registry, source_type if config.arms else None)
                if draws
                else None
                for _, source_type in policy.arms
            ]
        seed = config.arm_seed if config.arm_seed is not None else secrets.randbits(63)
        labels = list(policy.names)
        if config.blind_arms:
            labels = _opaque_labels(len(labels))
            if draws:
                _write_key(config.log_path, dict(zip(labels, policy.arms, strict=True)))
        arms = cls(policy, sources, labels, seed)
        if draws and (len(policy.arms) > 1 or config.arms):
            logger.info(
                "qr-sampler arms: %s; assignment %s%s",
                # Names only: under QR_BLIND_ARMS the labels must not be paired here.
                ", ".join(f"{name}={source_type}" for name, source_type in policy.arms),
                config.arm_assignment,
                f" (QR_ARM_SEED={seed})" if policy.random else "",
            )
        return arms

    def bind(self, column_names: Sequence[str]) -> None:
        """Learn which arm each value of the request table's ``arm`` column means."""
        position = {arm.name: i for i, arm in enumerate(self.arms)}
        self._column_arm = np.array(
            [position[self.choices[name].name] for name in column_names], dtype=np.int64
        )

    def admit(self, options: SamplingOptions) -> SamplingOptions:
        """The request's options with its arm settled: chosen, default or assigned."""
        if self.policy.random:
            name = self.arms[int(self._assigner.integers(len(self.arms)))].name
        else:
            name = options.arm or self.arms[0].name
        return options if name == options.arm else options.model_copy(update={"arm": name})

    def claim(self, options: SamplingOptions) -> str | None:
        """For a request admitted to an arm that serves bytes token by token: the id
        of the run's request it replays (see ``token_bytes``); None otherwise."""
        source = self.choices[options.arm].source
        book = source.token_bytes() if source is not None else None
        return book.claim(options.tag) if book is not None else None

    def draw(
        self,
        arm_column: npt.NDArray[np.float64],
        counts: npt.NDArray[np.int64],
        keep_going: bool = False,
        tokens: Sequence[tuple[str | None, int | None]] | None = None,
    ) -> StepDraw:
        """One draw per arm for all of its rows; bytes end up in row order.
        ``tokens``: each row's request id and position, for arms that serve by token.

        ``EntropyUnavailableError`` from any arm's source propagates, unless
        ``keep_going``: then that arm's rows get no bytes and the draw lists the failure.
        """
        row_arm = self._column_arm[arm_column.astype(np.int64)]
        draws: dict[int, EntropyDraw] = {}
        failures: dict[int, EntropyUnavailableError] = {}
        drawing = row_arm[counts > 0]
        # The arms in use, in order: a count per arm, not a sort of the rows.
        for arm in np.flatnonzero(np.bincount(drawing)).tolist():
            source = self.arms[arm].source
            assert source is not None, "a tensor-parallel follower never draws"
            rows = row_arm == arm
            keys = None
            if tokens is not None:
                keys = [
                    TokenKey(tokens[row][0], tokens[row][1], int(counts[row]))
                    for row in np.flatnonzero(rows & (counts > 0)).tolist()
                ]
            try:
                draws[arm] = source.draw(int(counts[rows].sum()), keys)
            except EntropyUnavailableError as exc:
                if not keep_going:
                    raise
                failures[arm] = exc
        if failures:
            counts = np.where(np.isin(row_arm, list(failures)), 0, counts)
        if len(draws) <= 1:
            data = next(iter(draws.values())).data if draws else b""
            return StepDraw(data, self.arms, draws, row_arm, counts, failures)
        # Each arm's bytes go to its rows' places, in row order within the arm.
        byte_arm = np.repeat(row_arm, counts)
        laid_out = np.empty(len(byte_arm), dtype=np.uint8)
        for arm, arm_draw in draws.items():
            laid_out[byte_arm == arm] = np.frombuffer(arm_draw.data, dtype=np.uint8)
        return StepDraw(laid_out.tobytes(), self.arms, draws, row_arm, counts, failures)

    def close(self) -> None:
        for arm in self.arms:
            if arm.source is not None:
                arm.source.close()


def _opaque_labels(count: int) -> list[str]:
    labels: set[str] = set()
    while len(labels) < count:
        labels.add(f"arm-{secrets.token_hex(3)}")
    return list(labels)


def _write_key(log_path: str, key: Mapping[str, tuple[str, str]]) -> None:
    """Write the label -> arm key beside the records, under a name no restart reuses."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    base = log_path or os.path.join(os.getcwd(), "qr-sampler")
    path = f"{base}.blind-key-{stamp}-{os.getpid()}.json"
    body = {label: {"arm": name, "entropy_source": source} for label, (name, source) in key.items()}
    with open(path, "x", encoding="utf-8") as handle:
        json.dump({"labels": body}, handle, indent=2)
    logger.info(
        "qr-sampler blind arms: records carry opaque labels; the key is in %s "
        "(keep it from the analyst until unblinding)",
        path,
    )
