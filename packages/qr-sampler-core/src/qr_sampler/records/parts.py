"""Rotation: one engine's records in parts, each a chain that names the end of the last.

With ``QR_LOG_ROTATE_MB`` set, once an engine's records file passes that size the
run goes on in the next part: ``NAME.EXT``, then ``NAME.part0001.EXT``,
``NAME.part0002.EXT`` ... (after the data-parallel suffix: ``NAME.dp1.part0001.EXT``),
so a shell glob lists an engine's parts in order. The bytes archive is split with
the records, part for part: a record's ``bytes_offset`` points into the archive part
of the same number. Each part has its own manifest and heads; the manifest of part
``k`` names the hash of part ``k - 1``'s last line (``previous_head``) and its name
(``previous_file``).
"""

from __future__ import annotations

import os


def part_path(path: str, part: int) -> str:
    """The file of part ``part`` of ``path`` (part 0 is ``path`` itself; "" stays "")."""
    if not path or part == 0:
        return path
    root, extension = os.path.splitext(path)
    return f"{root}.part{part:04d}{extension}"


def last_part(path: str) -> int:
    """The part a writer starting on ``path`` appends to: the last one there, so a server
    started again goes on in the part where the run before it stopped."""
    part = 0
    while path and os.path.exists(part_path(path, part + 1)):
        part += 1
    return part
