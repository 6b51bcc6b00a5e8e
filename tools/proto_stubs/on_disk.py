"""Compare freshly generated stubs with the files under a root, or write them there.

The root is the checkout by default; ``--out DIR`` (and the tests) point it elsewhere,
laid out like the repository.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from proto_stubs.catalog import PACKAGES, REPO_ROOT, ProtoPackage
from proto_stubs.generate import render_all


def stale_files(
    packages: Iterable[ProtoPackage] = PACKAGES.values(),
    root: Path = REPO_ROOT,
    *,
    allow_version_mismatch: bool = False,
) -> list[str]:
    """Generated files (repository-relative) that are missing under ``root`` or differ."""
    fresh = render_all(packages, allow_version_mismatch=allow_version_mismatch)
    return [
        key
        for key, text in fresh.items()
        if not (root / key).is_file() or (root / key).read_text(encoding="utf-8") != text
    ]


def write(fresh: Mapping[str, str], root: Path = REPO_ROOT) -> list[Path]:
    """Write ``fresh`` (from :func:`render_all`) under ``root``; returns the paths written."""
    written = []
    for key, text in fresh.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
