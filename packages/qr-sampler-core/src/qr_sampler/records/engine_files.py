"""One records file and one bytes archive per engine process.

Under vLLM's data parallelism (``--data-parallel-size N``) N engine processes sample
side by side, each with its own sampler. Each writes its own files, so that no two
processes append to one file and each file is one writer's ordered stream (what a
per-writer hash chain needs). Engine 0 keeps the configured name, so a single-engine
run's files are where ``QR_LOG_PATH`` and ``QR_BYTES_PATH`` say; engine ``r`` writes
``NAME.dpR.EXT`` beside it. Every record also carries ``dp_rank``.
"""

from __future__ import annotations

import os


def engine_path(path: str, dp_rank: int) -> str:
    """The file engine ``dp_rank`` writes for the configured ``path`` ("" stays "")."""
    if not path or dp_rank == 0:
        return path
    root, extension = os.path.splitext(path)
    return f"{root}.dp{dp_rank}{extension}"
