"""Checks a records file's hash chain against its manifests and heads (see ``chain``).

Reads only the three files (and a public key when the run was signed), so a
reviewer needs nothing from whoever ran the engine. Each problem names the first
line where the chain stops holding and, where the file shows it, why: a line that
is not there any more, one that moved, one that was edited or added. A part of a
rotated run starts from the head its first manifest names; that the head is the
last line of the part before is checked across files (``parts_check``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qr_sampler.records.chain import HEADS_SUFFIX, LINK_FIELD, MANIFEST_SUFFIX, line_sha256
from qr_sampler.records.signing import signature_holds

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass(frozen=True)
class ChainProblem:
    #: The file and line: ``records line 7``, ``heads line 2``.
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(frozen=True)
class Continuation:
    """A part of a rotated run: its first manifest names the part before it."""

    #: The manifest's line: ``manifest line 1``.
    where: str
    previous_file: str
    previous_head: str | None


@dataclass
class ChainReport:
    #: Records whose link to the line before holds.
    linked: int = 0
    #: Records written before records were chained (no ``prev_sha256``, no manifest).
    unchained: int = 0
    #: Runs begun in this file (a run continued from the part before is not counted).
    runs: int = 0
    heads: int = 0
    #: Manifests and heads whose signature the given public key accepted.
    signatures: int = 0
    #: The run was signed but no public key was given, so signatures went unchecked.
    signed_unchecked: bool = False
    #: Set where the file is a part of a rotated run after its first.
    continues: Continuation | None = None
    problems: list[ChainProblem] = field(default_factory=list)


@dataclass
class _Run:
    #: The hash of the run's manifest line.
    sha256: str
    #: The hashes of the run's records, in order.
    records: list[str] = field(default_factory=list)


def _lines(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", newline="\n") as handle:
        return [line.rstrip("\n") for line in handle]


def _entries(path: str, name: str, report: ChainReport) -> list[tuple[int, str, dict[str, Any]]]:
    entries = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            report.problems.append(ChainProblem(f"{name} line {number}", "not a JSON object"))
            continue
        entries.append((number, line, entry))
    return entries


def check_chain(records_path: str, public_key: Ed25519PublicKey | None = None) -> ChainReport:
    """Check ``records_path``'s chain; with ``public_key``, every manifest and head
    must carry its valid signature."""
    report = ChainReport()
    manifests = _entries(records_path + MANIFEST_SUFFIX, "manifest", report)
    report.continues = _continuation(manifests)
    runs = _walk(records_path, manifests, report)
    _check_signatures(manifests, "manifest", public_key, report)
    heads = _entries(records_path + HEADS_SUFFIX, "heads", report)
    _check_heads(heads, runs, report)
    _check_signatures(heads, "heads", public_key, report)
    continued = {line_sha256(manifests[0][1])} if report.continues is not None else set()
    report.runs = len(runs.keys() - continued)
    report.heads = len(heads)
    return report


def _continuation(manifests: list[tuple[int, str, dict[str, Any]]]) -> Continuation | None:
    if not manifests or not isinstance(manifests[0][2].get("previous_file"), str):
        return None
    number, _, manifest = manifests[0]
    head = manifest.get("previous_head")
    return Continuation(
        f"manifest line {number}",
        manifest["previous_file"],
        head if isinstance(head, str) else None,
    )


def _walk(
    records_path: str, manifests: list[tuple[int, str, dict[str, Any]]], report: ChainReport
) -> dict[str, _Run]:
    """Follow the links line by line, starting a run at each manifest in turn."""
    lines = _lines(records_path)
    hashes = [line_sha256(line) for line in lines]
    where = {digest: number for number, digest in enumerate(hashes, start=1)}
    pending = [(line_sha256(text), entry) for _, text, entry in manifests]
    known = {line_sha256(text): number for number, text, _ in manifests}
    runs: dict[str, _Run] = {}
    run: _Run | None = None
    # A part of a rotated run goes on from the part before's last line.
    before = report.continues.previous_head if report.continues is not None else None
    for number, line in enumerate(lines, start=1):
        digest = hashes[number - 1]
        link = _link(line)
        starts = _starts(pending, link, before)
        if link is None and not known:
            report.unchained += 1
        elif starts is not None:
            del pending[: starts + 1]
            run = runs[str(link)] = _Run(str(link), [digest])
            report.linked += 1
        elif run is not None and link == before:
            run.records.append(digest)
            report.linked += 1
        else:
            report.problems.append(
                ChainProblem(f"records line {number}", _broken(link, before, where, known))
            )
            # Carry on from this line, so each later break is named on its own.
            run = run if run is not None else _Run("")
            run.records.append(digest)
        before = digest
    for sha, manifest in pending:
        # A run that ended before its first token leaves a manifest and no record.
        if manifest.get("previous_head") != before:
            report.problems.append(
                ChainProblem(
                    f"manifest line {known[sha]}",
                    "no record links to this run's manifest (its records were removed, or "
                    "the manifest was edited)",
                )
            )
    return runs


def _starts(
    pending: list[tuple[str, dict[str, Any]]], link: str | None, before: str | None
) -> int | None:
    """Which pending manifest a record linked to ``link`` starts the run of; runs
    before it in the manifest file must have ended with no record, at this point."""
    for index, (sha, manifest) in enumerate(pending):
        if manifest.get("previous_head") != before:
            return None
        if sha == link:
            return index
    return None


def _link(line: str) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    value = record.get(LINK_FIELD) if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _broken(
    link: str | None, before: str | None, where: dict[str, int], known: dict[str, int]
) -> str:
    expected = (
        f"{LINK_FIELD} {before[:16]}... (the hash of the line before)"
        if before is not None
        else f"{LINK_FIELD} naming the run's manifest"
    )
    if link is None:
        return f"expected {expected}, found a line without one (inserted, or not a record)"
    if link in where:
        return (
            f"expected {expected}, found the hash of line {where[link]}: records were "
            "reordered, or a line was inserted before this one"
        )
    if link in known:
        return (
            f"expected {expected}, found the hash of manifest line {known[link]}, which "
            "does not start a run here (records before it removed, or the manifest edited)"
        )
    return (
        f"expected {expected}, found {link[:16]}..., the hash of no line here: the line "
        "before (or the run's manifest) was edited, or a record before this one removed"
    )


def _check_heads(
    heads: list[tuple[int, str, dict[str, Any]]], runs: dict[str, _Run], report: ChainReport
) -> None:
    for number, _, head in heads:
        where = f"heads line {number}"
        run = runs.get(str(head.get("manifest_sha256")))
        count = head.get("records")
        if run is None:
            report.problems.append(ChainProblem(where, "names a manifest no run of the file has"))
        elif not isinstance(count, int) or count < 1:
            report.problems.append(ChainProblem(where, f"records: {count!r} is not a count"))
        elif count > len(run.records):
            report.problems.append(
                ChainProblem(
                    where,
                    f"the run had {count} records when this head was written, the file holds "
                    f"{len(run.records)}: records were cut from its end (truncated file?)",
                )
            )
        elif run.records[count - 1] != head.get("head_sha256"):
            report.problems.append(
                ChainProblem(
                    where,
                    f"the run's record {count} does not hash to this head's head_sha256: the "
                    "record was edited after the head was written, or the head is forged",
                )
            )


def _check_signatures(
    entries: list[tuple[int, str, dict[str, Any]]],
    name: str,
    public_key: Ed25519PublicKey | None,
    report: ChainReport,
) -> None:
    for number, _, entry in entries:
        if public_key is None:
            report.signed_unchecked |= isinstance(entry.get("signature"), str)
        elif signature_holds(public_key, entry):
            report.signatures += 1
        else:
            found = "a signature" if entry.get("signature") else "none"
            report.problems.append(
                ChainProblem(
                    f"{name} line {number}",
                    f"signature: expected one by the given public key, found {found} that "
                    "this key does not accept (another key, or the line was changed)",
                )
            )
