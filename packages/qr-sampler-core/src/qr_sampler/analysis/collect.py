"""One pass over record files, keeping only what the statistics need.

Per token this keeps u and z (16 bytes) and the running sums of everything else,
so a million records take about 16 MB whatever their size on disk.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

#: Ranks from this one up share the last bar of the rank distribution.
RANK_BUCKETS = 20
_CHUNK = 1 << 16
_NO_STEP = object()


class Column:
    """A float64 column that grows in fixed chunks (no list of Python floats)."""

    def __init__(self) -> None:
        self._chunks: list[npt.NDArray[np.float64]] = []
        self._current = np.empty(_CHUNK)
        self._size = 0

    def append(self, value: float) -> None:
        if self._size == _CHUNK:
            self._chunks.append(self._current)
            self._current = np.empty(_CHUNK)
            self._size = 0
        self._current[self._size] = value
        self._size += 1

    def values(self) -> npt.NDArray[np.float64]:
        return np.concatenate([*self._chunks, self._current[: self._size]])


@dataclass
class Group:
    """Everything about the tokens of one group (all tokens when not grouped)."""

    u: Column = field(default_factory=Column)
    z: Column = field(default_factory=Column)
    fallback: int = 0
    ranks: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(RANK_BUCKETS + 1, np.int64)
    )
    prob_sum: float = 0.0
    surprisal_bits_sum: float = 0.0
    requests: set[str] = field(default_factory=set)

    @property
    def tokens(self) -> int:
        return int(self.ranks.sum())


@dataclass
class Collection:
    by: str | None
    groups: dict[str, Group] = field(default_factory=dict)
    steps: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    #: Fetch latency, once per engine step (every record of a step shares its draw).
    fetch_ms: dict[str, Column] = field(default_factory=dict)
    skipped_lines: int = 0

    @property
    def total(self) -> Group:
        """All tokens as one group: the sum of the groups, u and z in file order."""
        if len(self.groups) == 1:
            return next(iter(self.groups.values()))
        merged = Group()
        for group in self.groups.values():
            merged.fallback += group.fallback
            merged.ranks += group.ranks
            merged.prob_sum += group.prob_sum
            merged.surprisal_bits_sum += group.surprisal_bits_sum
            merged.requests |= group.requests
        return merged


def collect(paths: Iterable[str], by: str | None = None) -> Collection:
    """Read every record of ``paths`` once; ``by`` names the record field to group on."""
    collection = Collection(by)
    for file_index, path in enumerate(paths):
        previous_step: Any = _NO_STEP
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                record = _parse(line)
                if record is None:
                    collection.skipped_lines += bool(line.strip())
                    continue
                step = record.get("step")
                source = str(record.get("entropy_source"))
                if step != previous_step:
                    collection.steps += 1
                    previous_step = step
                    collection.fetch_ms.setdefault(source, Column()).append(
                        float(record.get("fetch_ms", math.nan))
                    )
                collection.sources[source] += 1
                _add(collection, record, file_index)
    return collection


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("u"), (int, float)):
        return None
    return record


def _add(collection: Collection, record: dict[str, Any], file_index: int) -> None:
    key = "all" if collection.by is None else _label(record.get(collection.by))
    group = collection.groups.get(key)
    if group is None:
        group = collection.groups[key] = Group()
    group.u.append(float(record["u"]))
    group.z.append(float(record.get("z_score", math.nan)))
    group.fallback += bool(record.get("fallback"))
    group.ranks[min(int(record.get("token_rank", 0)), RANK_BUCKETS)] += 1
    prob = float(record.get("token_prob", math.nan))
    group.prob_sum += prob
    # A chosen token always has a probability; 0 or a missing one makes the mean n/a.
    group.surprisal_bits_sum += -math.log2(prob) if prob > 0 else math.nan
    request = record.get("request_id")
    # Without ids (older records) every file counts as one request stream.
    group.requests.add(str(request) if request is not None else f"file {file_index}")


def _label(value: object) -> str:
    return "(none)" if value is None or value == "" else str(value)
