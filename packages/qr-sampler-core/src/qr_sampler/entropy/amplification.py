"""Signal amplifiers: many entropy bytes in, one uniform u per row out (host-side numpy)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# numpy has no erfc; libm's is exact to double precision and there is one value
# per row, so a ufunc over the scalars costs microseconds.
_erfc = np.frompyfunc(math.erfc, 1, 1)
_probit = np.frompyfunc(statistics.NormalDist().inv_cdf, 1, 1)


@dataclass(frozen=True)
class Amplified:
    """Per-row results of amplification, kept for the token records."""

    u: FloatArray
    z_score: FloatArray
    sample_mean: FloatArray


class SignalAmplifier(Protocol):
    """Turns each row's bytes into u in (0, 1), uniform when the bytes are."""

    def amplify(
        self,
        data: npt.NDArray[np.uint8],
        offsets: npt.NDArray[np.int64],
        counts: npt.NDArray[np.int64],
        params: Mapping[str, FloatArray],
    ) -> Amplified:
        """Row i owns ``data[offsets[i] : offsets[i] + counts[i]]``; ``params`` holds
        the rows' numeric options by field name."""
        ...


def row_sums(
    data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Each row's byte total, ``data[offsets[i] : offsets[i] + counts[i]].sum()``.

    One ``reduceat`` over start and end indices, in whatever order the rows' bytes
    lie (about 20x faster than prefix sums over the whole draw).
    """
    # reduceat refuses an index equal to the length, which the last end may be.
    padded = np.append(data, np.uint8(0))
    bounds = np.column_stack([offsets, offsets + counts]).ravel()
    sums = np.add.reduceat(padded, bounds, dtype=np.int64)[::2]
    # An empty range would give the byte at its start instead of 0.
    return np.where(counts > 0, sums, 0)


def normal_cdf(z: FloatArray) -> FloatArray:
    """Phi(z), accurate in both tails (erfc avoids the cancellation of 1 + erf)."""
    return np.asarray(0.5 * _erfc(-z / math.sqrt(2.0)), dtype=np.float64)


class ZScoreMeanAmplifier:
    """u = Phi((M - mu) / (sigma / sqrt(N))) for the mean M of a row's N bytes.

    Under the null (uniform bytes) M is the mean of N iid draws, so z is standard
    normal by the central limit theorem and u is uniform; a bias in the bytes
    moves u towards 0 or 1.
    """

    def amplify(
        self,
        data: npt.NDArray[np.uint8],
        offsets: npt.NDArray[np.int64],
        counts: npt.NDArray[np.int64],
        params: Mapping[str, FloatArray],
    ) -> Amplified:
        n = counts.astype(np.float64)
        return self.from_means(row_sums(data, offsets, counts) / n, n, params)

    @staticmethod
    def from_means(mean: FloatArray, n: FloatArray, params: Mapping[str, FloatArray]) -> Amplified:
        """z and u from the rows' byte means alone; ``qr-sampler verify`` checks
        records without their bytes through this same arithmetic."""
        sem = params["population_std"] / np.sqrt(n)
        z = (mean - params["population_mean"]) / sem
        eps = params["uniform_clamp_epsilon"]
        u = np.clip(normal_cdf(z), eps, 1.0 - eps)
        return Amplified(u=u, z_score=z, sample_mean=mean)


#: Bytes one ``uniform_bits`` word spans, and the bits of it that make u.
WORD_BYTES = 7
WORD_BITS = 52


class UniformBitsAmplifier:
    """u = (2k + 1) / 2^53, k the top 52 bits of the XOR of a row's 7-byte words.

    Every u is an odd multiple of 2^-53: exactly representable, symmetric about 1/2 and
    never 0 or 1, so with uniform bytes each of the 2^52 values is equally likely and u
    is exactly uniform at float64 resolution (no normal approximation, no clamp). Seven
    bytes a token are enough, which keeps a metered service's quota for many tokens.
    More bytes are folded in by XOR (a short last word is padded with zeros): u stays
    exactly uniform as long as one word is, and every byte drawn is used. ``z_score``
    is Phi^-1(u), standard normal under the null, so z-based analyses read it as they
    read ``zscore_mean``'s; ``sample_mean`` is the mean of the row's bytes.
    """

    #: ``sample_count`` below this leaves u short of its 52 bits; the options refuse it.
    min_sample_count = WORD_BYTES

    def amplify(
        self,
        data: npt.NDArray[np.uint8],
        offsets: npt.NDArray[np.int64],
        counts: npt.NDArray[np.int64],
        params: Mapping[str, FloatArray],
    ) -> Amplified:
        k = folded_words(data, offsets, counts) >> np.uint64(WORD_BYTES * 8 - WORD_BITS)
        u = (2.0 * k.astype(np.float64) + 1.0) * 2.0**-53
        z = np.asarray(_probit(u), dtype=np.float64)
        mean = row_sums(data, offsets, counts) / counts.astype(np.float64)
        return Amplified(u=u, z_score=z, sample_mean=mean)


def folded_words(
    data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """Each row's 7-byte words XORed together, as a big-endian integer below 2^56.

    Byte ``p`` of the folded word is the XOR of the row's bytes at ``p``, ``p + 7``,
    ... : one ``reduceat`` per byte position over all rows at once. Rows must hold at
    least one byte at every position (``counts >= 7``).
    """
    word = np.zeros(counts.size, dtype=np.uint64)
    for position in range(WORD_BYTES):
        per_row = (counts - position + WORD_BYTES - 1) // WORD_BYTES
        starts = np.cumsum(per_row) - per_row
        index_in_row = np.arange(per_row.sum()) - np.repeat(starts, per_row)
        picked = data[np.repeat(offsets + position, per_row) + WORD_BYTES * index_in_row]
        column = np.bitwise_xor.reduceat(picked, starts) if picked.size else picked
        word = (word << np.uint64(8)) | column.astype(np.uint64)
    return word
