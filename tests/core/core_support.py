"""Helpers the core tests share across their folders (this folder is on sys.path)."""

from __future__ import annotations

import math

import numpy as np
import torch

from qr_sampler import EntropySource, EntropyUnavailableError, FallbackEntropySource
from qr_sampler.entropy.system import SystemEntropySource
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import GREEDY_BELOW, QRSamplerConfig


class RecordingSource(EntropySource):
    """A real source that keeps every byte it hands out, so tests can replay a step."""

    name = "recording"

    def __init__(self, fail: bool = False) -> None:
        self.draws: list[bytes] = []
        self.fail = fail

    def get_random_bytes(self, n: int) -> bytes:
        if self.fail:
            raise EntropyUnavailableError("recording source switched off")
        data = SystemEntropySource().get_random_bytes(n)
        self.draws.append(data)
        return data


def make_sampler(tmp_path, fallback=True, fail=False, **settings):
    source = RecordingSource(fail=fail)
    config = QRSamplerConfig.load(env_file=str(tmp_path / "absent.env"), **settings)
    wrapped = FallbackEntropySource(source, SystemEntropySource() if fallback else None)
    return QRSampler(config=config, source=wrapped), source


def forced(logits: torch.Tensor) -> list[int]:
    """The token id of each forced row; checks the row is 0.0 there and -inf elsewhere."""
    tokens = []
    for row in logits:
        assert (row == 0).sum() == 1
        assert torch.isinf(row).sum() == row.numel() - 1
        tokens.append(int((row == 0).nonzero()))
    return tokens


def reference_token(logits, u, temperature, top_k, top_p):
    """A slow, obviously-correct float64 version of the documented algorithm."""
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))
    if temperature < GREEDY_BELOW:
        return order[0]
    if top_k > 0:  # every token tied with the k-th stays, as in vLLM
        kth = logits[order[min(top_k, len(order)) - 1]]
        order = [i for i in order if logits[i] >= kth]
    top = logits[order[0]]
    weights = [math.exp((logits[i] - top) / temperature) for i in order]
    total = sum(weights)
    probs = [w / total for w in weights]
    kept, before = [], 0.0
    for i, p in zip(order, probs, strict=True):
        if before < top_p:
            kept.append((i, p))
        before += p
    mass = sum(p for _, p in kept)
    cumulative = 0.0
    for i, p in kept:
        cumulative += p
        if u * mass < cumulative:
            return i
    return kept[-1][0]


def documented_stream(seed: int, n: int) -> bytes:
    """The recipe the module docstring gives for reproducing a run's bytes."""
    return np.random.PCG64(seed).random_raw(-(-n // 8)).astype("<u8").tobytes()[:n]
