"""What the chain and rotation tests share: a real sampler's run, and file edits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from qr_sampler.engine.emission import EmissionGate
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import QRSamplerConfig

VOCAB = 200
ROWS = 3
STEPS = 5


def sampled_run(
    tmp_path: Path,
    log: Path,
    steps: int = STEPS,
    *,
    settle: bool = False,
    held: bool = False,
    **settings: str,
) -> QRSampler:
    """``steps`` steps of ROWS requests through the real sampler, records to ``log``.
    ``settle``: each step's records are written before the next step is sampled, as on
    an engine slower than its records thread; ``held``: each step's records wait until
    the engine has booked its tokens, as under vLLM's V1 runner (``EmissionGate``).
    Returns the sampler, closed."""
    config = QRSamplerConfig.load(
        env_file=str(tmp_path / "absent.env"),
        log_path=str(log),
        bytes_path=str(log.with_suffix(".bin")),
        **settings,
    )
    dp_rank = int(settings.pop("dp_rank", 0)) if "dp_rank" in settings else 0
    sampler = QRSampler(config, dp_rank=dp_rank)
    gate = EmissionGate(sampler.emit, sampler.output_of)
    if held:
        sampler.emit = gate.hold
    outputs: list[list[int]] = [[] for _ in range(ROWS)]
    for slot in range(ROWS):
        sampler.admit(slot, sampler.resolve({}), outputs[slot])
    generator = torch.Generator().manual_seed(7)
    for _ in range(steps):
        logits = torch.randn(ROWS, VOCAB, generator=generator)
        positions = np.array([len(output) for output in outputs])
        sampled = sampler.sample(logits, np.arange(ROWS), positions=positions)
        for output, token in zip(outputs, (sampled == 0).int().argmax(-1).tolist(), strict=True):
            output.append(token)
        gate.settle()
        if settle:
            sampler.sink.flush()
    sampler.close()
    return sampler


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def rewrite(path: Path, new_lines: list[str]) -> None:
    path.write_text("".join(new_lines))
