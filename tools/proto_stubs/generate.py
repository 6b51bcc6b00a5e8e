"""Run protoc on a package's proto and return the stubs it should commit, in memory.

Nothing is written here: :mod:`proto_stubs.on_disk` decides whether the output is compared
with the checkout or written over it.
"""

from __future__ import annotations

import importlib
import importlib.resources
import tempfile
from collections.abc import Iterable
from pathlib import Path

from proto_stubs.catalog import PACKAGES, REPO_ROOT, ProtoPackage
from proto_stubs.toolchain import RegenError, require_grpcio_tools


def _postprocess(package: ProtoPackage, rel: str, text: str) -> str:
    """protoc's output as the package commits it: its rewrites, then the mypy header."""
    for old, new in package.rewrites:
        text = text.replace(old, new)
    if rel.endswith("_pb2_grpc.py"):
        # protoc's service stubs are untyped; keep ``mypy --strict`` on the package clean.
        text = "# mypy: ignore-errors\n" + text
    return text


def render(package: ProtoPackage, *, allow_version_mismatch: bool = False) -> dict[str, str]:
    """Compile ``package``'s proto afresh: ``{repository-relative path: file text}``.

    Raises :class:`~proto_stubs.toolchain.RegenError` when grpcio-tools is missing or,
    unless ``allow_version_mismatch``, is not the pinned release, or when protoc fails.
    """
    require_grpcio_tools(allow_version_mismatch=allow_version_mismatch)
    protoc = importlib.import_module("grpc_tools.protoc")
    include = REPO_ROOT / package.include_dir
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="regen-protos-") as tmp:
        # Every output kind is requested; only the files the package commits are read back.
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={include}",
                f"--proto_path={well_known}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                str(include / package.proto),
            ]
        )
        if status != 0:
            raise RegenError(f"protoc failed on {package.proto} with exit status {status}")
        return {
            key: _postprocess(package, rel, (Path(tmp) / rel).read_text(encoding="utf-8"))
            for key, rel in zip(package.outputs(), package.generated, strict=True)
        }


def render_all(
    packages: Iterable[ProtoPackage] = PACKAGES.values(), *, allow_version_mismatch: bool = False
) -> dict[str, str]:
    """:func:`render` for several packages, merged into one mapping."""
    fresh: dict[str, str] = {}
    for package in packages:
        fresh.update(render(package, allow_version_mismatch=allow_version_mismatch))
    return fresh
