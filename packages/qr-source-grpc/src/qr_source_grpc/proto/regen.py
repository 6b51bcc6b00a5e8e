"""Regenerate, or check, the committed stubs of ``generic_entropy.proto``.

Usage::

    pip install 'qr-source-grpc[regen]'            # grpcio-tools at the pinned version
    python -m qr_source_grpc.proto.regen           # rewrite the committed stubs
    python -m qr_source_grpc.proto.regen --check   # exit 1 when they are stale

The proto is compiled with the ``src`` directory as include root, so protoc already names
the module ``qr_source_grpc.proto.generic_entropy_pb2`` and nothing needs rewriting.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: The grpcio-tools release the committed stubs came from; other releases emit other code.
GRPCIO_TOOLS_VERSION = "1.71.2"

#: The include root: the directory that holds the ``qr_source_grpc`` package.
SOURCE_ROOT = Path(__file__).resolve().parents[2]

PROTO_FILE = "qr_source_grpc/proto/generic_entropy.proto"
GENERATED_FILES = (
    "qr_source_grpc/proto/generic_entropy_pb2.py",
    "qr_source_grpc/proto/generic_entropy_pb2.pyi",
)


class RegenError(RuntimeError):
    """grpcio-tools is missing or is not the pinned release, or protoc failed."""


def render() -> dict[str, str]:
    """Compile the proto into a temporary directory; ``{relative path: text}``."""
    try:
        version = importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != GRPCIO_TOOLS_VERSION:
        found = f"grpcio-tools {version} is installed" if version else "grpcio-tools is missing"
        raise RegenError(f"{found}; pip install 'grpcio-tools=={GRPCIO_TOOLS_VERSION}'")
    protoc = importlib.import_module("grpc_tools.protoc")
    with tempfile.TemporaryDirectory(prefix="qr-source-grpc-regen-") as tmp:
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={SOURCE_ROOT}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                str(SOURCE_ROOT / PROTO_FILE),
            ]
        )
        if status != 0:
            raise RegenError(f"protoc failed with exit status {status}")
        return {rel: (Path(tmp) / rel).read_text(encoding="utf-8") for rel in GENERATED_FILES}


def stale_files(root: Path = SOURCE_ROOT) -> list[str]:
    """Generated files under ``root`` that are missing or differ from a fresh compile."""
    return [
        rel
        for rel, text in render().items()
        if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != text
    ]


def write(root: Path = SOURCE_ROOT) -> list[Path]:
    """Write fresh stubs under ``root``; returns the paths written."""
    written = []
    for rel, text in render().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m qr_source_grpc.proto.regen [--check] [--root DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m qr_source_grpc.proto.regen")
    parser.add_argument("--check", action="store_true", help="exit 1 if the stubs are stale")
    parser.add_argument("--root", type=Path, default=SOURCE_ROOT, help="include root")
    args = parser.parse_args(argv)
    try:
        if not args.check:
            for path in write(args.root):
                print(f"wrote {path}")
            return 0
        stale = stale_files(args.root)
    except RegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for rel in stale:
        print(
            f"stale: {args.root / rel}; run python -m qr_source_grpc.proto.regen", file=sys.stderr
        )
    if not stale:
        print("generated stubs are up to date")
    return 1 if stale else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
