"""One pass over record files, keeping only what the statistics need.

Per token this keeps u and z (16 bytes) and the running sums of everything else,
so a million records take about 16 MB whatever their size on disk.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
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


#: What a run manifest says about the run, when a records file holds one (a JSON line
#: that is not a token record); token records themselves do not carry these.
RUN_FIELDS = ("model", "vllm_version", "qr_sampler_version", "started_at", "host")


@dataclass
class FileFacts:
    """What one input file is: where it is, its digest, and what its records say."""

    path: str
    records: int = 0
    skipped_lines: int = 0
    sha256: str = ""
    size_bytes: int = 0
    modified: str = ""
    config_hashes: Counter[str] = field(default_factory=Counter)
    arms: Counter[str] = field(default_factory=Counter)
    #: The fields of the file's first record: what ``--by`` can name.
    fields: tuple[str, ...] = ()
    run: dict[str, Any] = field(default_factory=dict)

    def add(self, record: dict[str, Any]) -> None:
        if not self.records:
            self.fields = tuple(record)
        self.records += 1
        self.config_hashes[str(record.get("config_hash"))] += 1
        self.arms[_label(record.get("arm"))] += 1

    def note(self, line: bytes) -> None:
        """A line that is not a token record: skipped, unless it describes the run."""
        self.skipped_lines += bool(line.strip())
        try:
            other = json.loads(line)
        except ValueError:
            return
        if isinstance(other, dict):
            self.run.update({k: other[k] for k in RUN_FIELDS if other.get(k) is not None})

    def finish(self, sha256: str) -> None:
        status = os.stat(self.path)
        self.sha256 = sha256
        self.size_bytes = status.st_size
        self.modified = (
            datetime.datetime.fromtimestamp(status.st_mtime, datetime.timezone.utc)
            .replace(microsecond=0)
            .isoformat()
        )


@dataclass
class Collection:
    by: str | None
    groups: dict[str, Group] = field(default_factory=dict)
    steps: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    #: Fetch latency by (arm, source), once per draw: a step draws once per arm, and
    #: every record of that arm in that step carries the same draw's ``fetch_ms``.
    fetch_ms: dict[tuple[str, str], Column] = field(default_factory=dict)
    skipped_lines: int = 0
    #: Greedy tokens: the argmax, chosen by no bytes, so outside every statistic of u.
    greedy: int = 0
    #: Per input file: its records (token lines) and what they say about the run.
    files: list[FileFacts] = field(default_factory=list)
    #: Records that have the ``by`` field at all (a value of null counts).
    by_present: int = 0

    @property
    def fields(self) -> set[str]:
        return {name for facts in self.files for name in facts.fields}

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
        facts = FileFacts(path)
        collection.files.append(facts)
        previous_step: Any = _NO_STEP
        step_arms: set[str] = set()
        digest = hashlib.sha256()
        with open(path, "rb") as lines:
            for line in lines:
                digest.update(line)
                record = _parse(line)
                if record is None and _greedy(line):
                    collection.greedy += 1
                    continue
                if record is None:
                    collection.skipped_lines += bool(line.strip())
                    facts.note(line)
                    continue
                facts.add(record)
                step = record.get("step")
                source = str(record.get("entropy_source"))
                if step != previous_step:
                    collection.steps += 1
                    previous_step = step
                    step_arms.clear()
                arm = _label(record.get("arm"))
                if arm not in step_arms:
                    step_arms.add(arm)
                    collection.fetch_ms.setdefault((arm, source), Column()).append(
                        float(record.get("fetch_ms", math.nan))
                    )
                collection.sources[source] += 1
                _add(collection, record, file_index)
        facts.finish(digest.hexdigest())
    return collection


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return None
    if not isinstance(record, dict) or not isinstance(record.get("u"), (int, float)):
        return None
    return record


def _greedy(line: bytes) -> bool:
    """Whether the line is the record of a greedy token (no bytes, u null)."""
    return b'"greedy":true' in line and b'"u":null' in line


def _add(collection: Collection, record: dict[str, Any], file_index: int) -> None:
    key = "all"
    if collection.by is not None:
        key = _label(record.get(collection.by))
        collection.by_present += collection.by in record
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
