"""The hash chain of a records file, its run manifest and its chain heads.

Every record line carries ``prev_sha256``, the SHA-256 of the line before it in the
same file (its bytes as written, without the newline); a run's first record carries
the hash of the run's manifest line instead. Removing, reordering, editing or
inserting a line breaks a link that ``qr-sampler verify`` names.

Each writing process has its own records file (one per data-parallel engine, see
``engine_files``), so each file holds one writer's chain and needs no chain id.
Beside ``RECORDS`` go two JSON-lines files:

- ``RECORDS.manifest``: one line per run written to the file (a server started
  again appends to the same records file); a manifest names ``previous_head``, the
  hash of the file's last line before the run, so runs chain on to each other;
- ``RECORDS.heads``: chain heads, each naming a manifest, how many records the run
  has written and the hash of the last; written after a step once
  ``QR_CHAIN_HEAD_INTERVAL_S`` has passed since the last, and on close. A head
  shows records cut from the end of the file; signed, it shows that no one but
  the key's holder wrote it.

A rotated run (``parts``) goes on in a new file whose manifest, a copy of the run's,
names the old file (``previous_file``) and the hash of its last line
(``previous_head``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from qr_sampler.records.record_file import RecordFile
from qr_sampler.records.signing import Signer

MANIFEST_SUFFIX = ".manifest"
HEADS_SUFFIX = ".heads"
#: The record field that holds the previous line's hash.
LINK_FIELD = "prev_sha256"


def line_sha256(line: str) -> str:
    """The hash a line is chained by: its UTF-8 bytes, without the newline."""
    return hashlib.sha256(line.encode("utf-8")).hexdigest()


def entry_line(entry: dict[str, Any]) -> str:
    """A manifest or head as one canonical JSON line (sorted keys)."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False)


def last_line(path: str) -> str | None:
    """The last non-empty line of ``path`` (read from its end), or None."""
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return None
    with handle:
        size = handle.seek(0, os.SEEK_END)
        window = 4096
        while True:
            start = max(0, size - window)
            handle.seek(start)
            lines = handle.read(size - start).rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or start == 0:
                return lines[-1].decode("utf-8", "replace") if lines[-1] else None
            window *= 4


class ChainWriter:
    """Links each line of one records file to the one before, and writes the run's
    manifest and heads beside it. Used on the records thread only."""

    def __init__(self, records_path: str, signer: Signer | None, head_interval_s: float) -> None:
        self.records_path = records_path
        self.signer = signer
        self.head_interval_s = head_interval_s
        self._manifests = RecordFile(records_path + MANIFEST_SUFFIX)
        self._heads = RecordFile(records_path + HEADS_SUFFIX)
        self.manifest_sha256 = ""
        #: The run's manifest as the sampler gave it, copied into each later part's.
        self._run_manifest: dict[str, Any] = {}
        self._prev = ""
        self._count = 0
        self._headed = 0
        self._last_head = -float("inf")

    def begin(self, manifest: dict[str, Any], previous_file: str | None = None) -> None:
        """Write the run's manifest; the next record links to it. ``previous_file``:
        the part this file continues, whose last line (rather than this file's) is
        the previous head."""
        self._run_manifest = dict(manifest)
        previous = last_line(previous_file or self.records_path)
        manifest = {
            **manifest,
            "previous_head": line_sha256(previous) if previous is not None else None,
            "previous_file": os.path.basename(previous_file) if previous_file else None,
            "records_file": os.path.basename(self.records_path),
            "public_key": self.signer.public_key_hex if self.signer else None,
        }
        line = entry_line(self.signer.sign(manifest) if self.signer else manifest)
        self._manifests.append(line + "\n")
        self.manifest_sha256 = self._prev = line_sha256(line)

    def continued(self, records_path: str) -> ChainWriter:
        """A writer for the run's next part, ``records_path``, its manifest written;
        this writer is left open (close it to write the old file's last head)."""
        writer = ChainWriter(records_path, self.signer, self.head_interval_s)
        try:
            writer.begin(dict(self._run_manifest), previous_file=self.records_path)
        except BaseException:
            writer.close()
            raise
        return writer

    def link(self, records: list[str]) -> tuple[str, str]:
        """The lines to append for ``records`` (JSON objects) and the hash of the
        last; nothing changes until ``appended`` says the write landed."""
        prev, lines = self._prev, []
        for record in records:
            line = f'{record[:-1]},"{LINK_FIELD}":"{prev}"}}'
            lines.append(line + "\n")
            prev = line_sha256(line)
        return "".join(lines), prev

    def appended(self, head: str, count: int) -> None:
        """``count`` lines ending in the one hashed ``head`` are in the file."""
        self._prev = head
        self._count += count

    def write_head(self, due: bool = False) -> None:
        """Write a head for the records so far (none if no record came since the last;
        ``due``: none either before ``head_interval_s`` has passed since the last)."""
        if due and time.monotonic() - self._last_head < self.head_interval_s:
            return
        if self._count == self._headed or not self.manifest_sha256:
            return
        head = {
            "manifest_sha256": self.manifest_sha256,
            "records": self._count,
            "head_sha256": self._prev,
            "time": time.time(),
        }
        self._heads.append(entry_line(self.signer.sign(head) if self.signer else head) + "\n")
        self._headed = self._count
        self._last_head = time.monotonic()

    def close(self) -> None:
        try:
            self.write_head()
        finally:
            self._manifests.close()
            self._heads.close()
