"""One run's records as a set of files: one per engine process (``engine_files``), and
one per part where the records were rotated (``parts``).

Each records file is checked against its own bytes archive, as ``verify`` checks one,
and its hash chain against its manifests and heads (``chain_check``); each part
against the part before (``parts_check``). Across the set, no request id may appear
in the files of two engines (each engine numbers its own requests under its rank,
so a shared id means files of different runs were mixed); one engine's request may
span its parts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qr_sampler.plugins.registry import Registry
from qr_sampler.records.chain_check import ChainReport, check_chain
from qr_sampler.records.parts_check import link_parts
from qr_sampler.records.verify import VerifyReport, verify

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass
class RunReport:
    #: (records file, its report), in the order given.
    files: list[tuple[str, VerifyReport]] = field(default_factory=list)
    #: Request ids found in the files of more than one engine, with the files.
    shared_ids: dict[str, list[str]] = field(default_factory=dict)
    #: (records file, its chain's report), in the same order.
    chains: list[tuple[str, ChainReport]] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return (
            sum(len(report.mismatches) for _, report in self.files)
            + len(self.shared_ids)
            + sum(len(report.problems) for _, report in self.chains)
        )


def verify_run(
    records: Sequence[str],
    archives: Sequence[str] | None = None,
    registry: Registry | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> RunReport:
    """Check each of ``records`` against the archive in the same place of ``archives``,
    and its chain; with ``public_key``, every manifest and head must be signed by it."""
    if archives and len(archives) != len(records):
        raise ValueError(
            f"{len(records)} records file(s) but {len(archives)} bytes archive(s): give one "
            "archive per records file, in the same order"
        )
    run = RunReport()
    for index, path in enumerate(records):
        run.files.append((path, verify(path, archives[index] if archives else None, registry)))
        run.chains.append((path, check_chain(path, public_key)))
    # Files of one engine's rotated run share the index of its first part; a part
    # that cannot be placed is named by the chain check and left out here.
    engines = link_parts(run.chains)
    seen: dict[str, dict[int, list[str]]] = {}
    for path, engine in zip(records, engines, strict=True):
        if engine is None:
            continue
        for request_id in _request_ids(path):
            seen.setdefault(request_id, {}).setdefault(engine, []).append(path)
    run.shared_ids = {
        key: [path for paths in found.values() for path in paths]
        for key, found in seen.items()
        if len(found) > 1
    }
    return run


def _request_ids(path: str) -> set[str]:
    ids = set()
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # verify reports the line
            if isinstance(record, dict) and isinstance(record.get("request_id"), str):
                ids.add(record["request_id"])
    return ids
