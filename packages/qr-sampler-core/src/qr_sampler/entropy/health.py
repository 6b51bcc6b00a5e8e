"""Continuous health tests on every byte a source delivers (NIST SP 800-90B, 4.4).

Both tests treat each byte as one sample of a non-binary noise source that claims
``H`` bits of min-entropy per byte (``QR_HEALTH_MIN_ENTROPY``), with a false-alarm
probability of alpha = 2^-30 per test decision:

- Repetition Count Test: fails when ``C = 1 + ceil(30 / H)`` consecutive bytes are
  identical (4.4.1).
- Adaptive Proportion Test: the stream is cut into consecutive windows of W = 512
  bytes; a window fails when its first byte occurs ``C`` or more times in it, with
  ``C = 1 + CRITBINOM(W, 2^-H, 1 - alpha)`` (4.4.2).

State carries across draws, so a run or a window that spans two draws is judged
as if the bytes had come in one piece. Each check is a few passes of numpy over
the draw into buffers kept between draws (fresh large allocations would cost more
in page faults than the tests themselves).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qr_sampler.errors import HealthTestError

#: -log2 of the false-alarm probability of each test decision.
ALPHA_EXPONENT = 30
#: NIST's window for non-binary sources.
APT_WINDOW = 512
_LANES = np.uint64(0x0101010101010101)
#: Below this many bytes the repetition test scans every byte; above, it filters first.
_FILTER_MIN_BYTES = 4096
#: More candidate places than this and the source is poor: scan every byte instead.
_MAX_CANDIDATES = 256


def repetition_cutoff(min_entropy: float) -> int:
    """RCT cutoff: this many identical bytes in a row is a failure."""
    return 1 + math.ceil(ALPHA_EXPONENT / min_entropy)


def proportion_cutoff(min_entropy: float, window: int = APT_WINDOW) -> int:
    """APT cutoff: a window whose first byte occurs this often is a failure.

    ``1 + CRITBINOM(W, p, 1 - alpha)``: one more than the smallest k with
    P(Binomial(W, p) <= k) >= 1 - alpha, p = 2^-H.
    """
    p = 2.0**-min_entropy
    alpha = 2.0**-ALPHA_EXPONENT
    # Sum the upper tail from the top down: no cancellation against 1.
    log_q = math.log1p(-p) if p < 1 else -math.inf
    tail = 0.0
    for k in range(window, -1, -1):
        tail += _binomial_pmf(window, k, p, log_q)
        if tail > alpha:
            # P(X >= k) > alpha, P(X >= k + 1) <= alpha: CRITBINOM is k.
            return 1 + k
    return 1  # pragma: no cover - the whole distribution cannot sum to alpha or less


def _binomial_pmf(n: int, k: int, p: float, log_q: float) -> float:
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    log_choose = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(log_choose + k * math.log(p) + (n - k) * log_q)


@dataclass(frozen=True)
class HealthCutoffs:
    min_entropy: float
    repetition: int
    proportion: int
    #: A multiple of 8 below 2048: windows are counted eight bytes per uint64 word.
    window: int = APT_WINDOW

    def __post_init__(self) -> None:
        if self.window % 8 or not 8 <= self.window < 2048 or self.repetition < 2:
            raise ValueError(f"unsupported health-test parameters {self}")

    @classmethod
    def for_min_entropy(cls, min_entropy: float) -> HealthCutoffs:
        return cls(min_entropy, repetition_cutoff(min_entropy), proportion_cutoff(min_entropy))


class HealthTests:
    """The two tests over one source instance's byte stream; thread-safe."""

    def __init__(self, cutoffs: HealthCutoffs) -> None:
        self.cutoffs = cutoffs
        self.bytes_tested = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._buffers = (np.empty(0, dtype=np.bool_), np.empty(0, dtype=np.bool_))
        self._reset()

    def _reset(self) -> None:
        self._last = -1  # no byte seen: nothing to continue a run from
        self._run = 0
        self._reference = -1
        self._window_count = 0
        self._window_fill = 0

    def summary(self) -> dict[str, object]:
        """Cutoffs and counts, for ``health_check()``."""
        return {
            "min_entropy": self.cutoffs.min_entropy,
            "repetition_cutoff": self.cutoffs.repetition,
            "proportion_cutoff": self.cutoffs.proportion,
            "window": self.cutoffs.window,
            "bytes_tested": self.bytes_tested,
            "failures": self.failures,
        }

    def check(self, data: bytes) -> None:
        """Raise ``HealthTestError`` if ``data`` fails either test.

        A failed draw is discarded by the caller, so the tests start afresh after it.
        """
        if not data:
            return
        samples = np.frombuffer(data, dtype=np.uint8)
        with self._lock:
            try:
                self._repetition(samples)
                self._proportion(samples)
            except HealthTestError:
                self.failures += 1
                self._reset()
                raise
            self.bytes_tested += len(samples)

    # --- Repetition Count Test --------------------------------------------------

    def _repetition(self, x: npt.NDArray[np.uint8]) -> None:
        cutoff = self.cutoffs.repetition
        head = x[:cutoff]
        lead = _leading_run(head, self._last)
        if self._run + lead >= cutoff:
            self._fail_repetition(int(head[0]), self._run + lead)
        if self._has_run(x, cutoff):
            self._fail_repetition(None, cutoff)
        tail = x[-cutoff:][::-1]
        trailing = _leading_run(tail, int(tail[0]))
        if trailing >= cutoff:
            self._fail_repetition(int(tail[0]), trailing)
        self._run = self._run + len(x) if lead == len(x) else trailing
        self._last = int(x[-1])

    def _has_run(self, x: npt.NDArray[np.uint8], cutoff: int) -> bool:
        """Whether ``cutoff`` identical bytes follow one another anywhere in ``x``.

        The last byte of an odd-length ``x`` is left to the trailing-run check.
        """
        if len(x) < _FILTER_MIN_BYTES or cutoff < 5:
            return _contains_run(x, cutoff)
        # A run of 5 or more bytes covers two whole neighbouring byte pairs (aligned
        # 16-bit words) that are equal. Random bytes have about one such place per
        # 65,536 pairs; only those places are examined byte by byte.
        pairs = x[: len(x) // 2 * 2].view(np.uint16)
        same, spare = self._scratch(len(pairs))
        size = len(pairs) - 1
        np.equal(pairs[1:], pairs[:-1], out=same[:size])
        padded = -(-size // 8) * 8
        same[size:padded] = False
        words = same[:padded].view(np.uint64)
        hit_words = np.flatnonzero(np.not_equal(words, 0, out=spare[: len(words)]))
        if len(hit_words) > _MAX_CANDIDATES:  # a poor source: test it whole
            return _contains_run(x, cutoff)
        hits = (hit_words[:, None] * 8 + np.arange(8)).ravel()
        hits = hits[same[hits]]
        # Bytes 2k..2k+3 are in the run; it reaches at most cutoff - 1 further either way.
        pieces = [x[max(0, 2 * k - cutoff + 1) : 2 * k + 3 + cutoff].astype(np.int16) for k in hits]
        # -1 between pieces, so no run continues from one piece into the next.
        joined = np.concatenate([np.append(piece, -1) for piece in pieces] or [np.empty(0)])
        return _contains_run(joined, cutoff)

    def _fail_repetition(self, value: int | None, run: int) -> None:
        which = f" of 0x{value:02x}" if value is not None else ""
        raise HealthTestError(
            f"repetition count test failed: {run} identical bytes{which} in a row "
            f"(cutoff {self.cutoffs.repetition} at {self.cutoffs.min_entropy:g} bits/byte)"
        )

    # --- Adaptive Proportion Test -----------------------------------------------

    def _proportion(self, x: npt.NDArray[np.uint8]) -> None:
        window = self.cutoffs.window
        start = 0
        if self._window_fill:
            start = min(window - self._window_fill, len(x))
            self._window_count += int(np.count_nonzero(x[:start] == self._reference))
            self._window_fill += start
            self._check_window(self._window_count, self._reference)
            if self._window_fill == window:
                self._window_fill = 0
        whole = (len(x) - start) // window
        if whole:
            windows = x[start : start + whole * window].reshape(whole, window)
            counts = self._window_counts(windows)
            worst = int(np.argmax(counts))
            self._check_window(int(counts[worst]), int(windows[worst, 0]))
        rest = x[start + whole * window :]
        if len(rest):
            self._reference = int(rest[0])
            self._window_count = int(np.count_nonzero(rest == self._reference))
            self._window_fill = len(rest)
            self._check_window(self._window_count, self._reference)

    def _window_counts(self, windows: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
        """How often each window's first byte occurs in it."""
        matches, _ = self._scratch(windows.size)
        equal = matches[: windows.size].reshape(windows.shape)
        np.equal(windows, windows[:, :1], out=equal)
        # Sum the 0/1 bytes eight at a time: each byte lane of a uint64 adds up at most
        # W / 8 ones (< 256), so lanes never carry into each other; then add the lanes.
        words = matches[: windows.size].view(np.uint64)
        per_window = self.cutoffs.window // 8
        lanes = np.add.reduceat(words, np.arange(0, len(words), per_window))
        counts: npt.NDArray[np.uint64] = (lanes * _LANES) >> np.uint64(56)
        return counts

    def _check_window(self, count: int, reference: int) -> None:
        if count >= self.cutoffs.proportion:
            raise HealthTestError(
                f"adaptive proportion test failed: byte 0x{reference:02x} occurs {count} "
                f"times in a window of {self.cutoffs.window} (cutoff {self.cutoffs.proportion} "
                f"at {self.cutoffs.min_entropy:g} bits/byte)"
            )

    def _scratch(self, size: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        if len(self._buffers[0]) < size:
            # Whole uint64 words, so the lane sum can view the buffer as words.
            words = -(-size // 8) * 8
            self._buffers = (np.empty(words, dtype=np.bool_), np.empty(words, dtype=np.bool_))
        return self._buffers


def _contains_run(x: npt.NDArray[np.integer[Any]], cutoff: int) -> bool:
    """Exact test for ``cutoff`` equal neighbours in a row, for small or unusual inputs."""
    # same[i]: x[i] == x[i + 1]; a run is `cutoff - 1` true `same` in a row, found by
    # doubling the span each pass covers.
    same = x[1:] == x[:-1]
    span = 1
    while span < cutoff - 1 and len(same):
        step = min(span, cutoff - 1 - span)
        same = same[step:] & same[:-step]
        span += step
    return bool(same.any())


def _leading_run(x: npt.NDArray[np.uint8], value: int) -> int:
    """How many bytes at the start of ``x`` equal ``value``."""
    different = np.flatnonzero(x != value)
    return int(different[0]) if len(different) else len(x)
