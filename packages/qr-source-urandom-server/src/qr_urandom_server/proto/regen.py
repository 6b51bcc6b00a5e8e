"""Regenerate (or check) the committed protobuf/gRPC stubs for ``entropy_service.proto``.

Usage::

    pip install 'qr-source-urandom-server[regen]'     # grpcio-tools at the pinned version
    python -m qr_urandom_server.proto.regen           # rewrite the committed stubs
    python -m qr_urandom_server.proto.regen --check   # exit 1 if they are stale

protoc writes ``from qr_entropy.v1 import entropy_service_pb2`` into the service stub, which
only works when ``qr_entropy`` is a top-level package. The stubs live inside
``qr_urandom_server.proto``, so that import is rewritten to a relative one, and the module
name recorded for the message classes is rewritten to the real dotted module path; the
untyped service stub gets a ``# mypy: ignore-errors`` header. The proto
file keeps the name ``qr_entropy/v1/entropy_service.proto`` in the descriptor pool, which is
what server reflection reports.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.resources
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: The grpcio-tools release the committed stubs were generated with.
GRPCIO_TOOLS_VERSION = "1.71.2"

#: Directory that holds ``qr_entropy/v1/entropy_service.proto`` (the protoc include root).
PROTO_ROOT = Path(__file__).resolve().parent

#: The proto file, relative to :data:`PROTO_ROOT` (also its name in the descriptor pool).
PROTO_FILE = "qr_entropy/v1/entropy_service.proto"

#: Generated files, relative to :data:`PROTO_ROOT`.
GENERATED_FILES = (
    "qr_entropy/v1/entropy_service_pb2.py",
    "qr_entropy/v1/entropy_service_pb2.pyi",
    "qr_entropy/v1/entropy_service_pb2_grpc.py",
)

_PACKAGE = "qr_urandom_server.proto"  # not __name__: that is "__main__" under -m
_PROTOC_MODULE = "qr_entropy.v1.entropy_service_pb2"
_REAL_MODULE = f"{_PACKAGE}.{_PROTOC_MODULE}"
_REWRITES = (
    (
        "from qr_entropy.v1 import entropy_service_pb2 as",
        "from . import entropy_service_pb2 as",
    ),
    (f"'{_PROTOC_MODULE}'", f"'{_REAL_MODULE}'"),
)


class RegenError(RuntimeError):
    """grpcio-tools is missing, is the wrong version, or protoc failed."""


def installed_grpcio_tools_version() -> str | None:
    """The installed grpcio-tools version, or None when it is not installed."""
    try:
        return importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        return None


def _postprocess(rel: str, text: str) -> str:
    for old, new in _REWRITES:
        text = text.replace(old, new)
    if rel.endswith("_pb2_grpc.py"):
        # protoc's service stubs are untyped; keep ``mypy --strict`` on the package clean.
        text = "# mypy: ignore-errors\n" + text
    return text


def render(*, allow_version_mismatch: bool = False) -> dict[str, str]:
    """Run protoc into a temporary directory and return ``{relative path: file text}``.

    Raises :class:`RegenError` when grpcio-tools is missing or, unless
    ``allow_version_mismatch``, is not :data:`GRPCIO_TOOLS_VERSION` (other versions emit
    different code, so a comparison would always report the stubs as stale).
    """
    version = installed_grpcio_tools_version()
    if version is None:
        raise RegenError(
            f"grpcio-tools is not installed; pip install 'grpcio-tools=={GRPCIO_TOOLS_VERSION}'"
        )
    if version != GRPCIO_TOOLS_VERSION and not allow_version_mismatch:
        raise RegenError(
            f"grpcio-tools {version} is installed but the committed stubs are pinned to "
            f"{GRPCIO_TOOLS_VERSION}; pip install 'grpcio-tools=={GRPCIO_TOOLS_VERSION}' "
            "(or pass --allow-version-mismatch to move the pin deliberately)"
        )
    protoc = importlib.import_module("grpc_tools.protoc")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="qr-urandom-regen-") as tmp:
        argv = [
            "grpc_tools.protoc",
            f"--proto_path={PROTO_ROOT}",
            f"--proto_path={well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(PROTO_ROOT / PROTO_FILE),
        ]
        status = protoc.main(argv)
        if status != 0:
            raise RegenError(f"protoc failed with exit status {status}")
        out = Path(tmp)
        return {
            rel: _postprocess(rel, (out / rel).read_text(encoding="utf-8"))
            for rel in GENERATED_FILES
        }


def stale_files(root: Path = PROTO_ROOT, *, allow_version_mismatch: bool = False) -> list[str]:
    """Generated files under ``root`` that differ from a fresh protoc run (or are missing)."""
    fresh = render(allow_version_mismatch=allow_version_mismatch)
    stale = []
    for rel, text in fresh.items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(rel)
    return stale


def write(root: Path = PROTO_ROOT, *, allow_version_mismatch: bool = False) -> list[Path]:
    """Write freshly generated stubs under ``root``; returns the paths written."""
    written = []
    for rel, text in render(allow_version_mismatch=allow_version_mismatch).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m qr_urandom_server.proto.regen``."""
    parser = argparse.ArgumentParser(
        prog="python -m qr_urandom_server.proto.regen",
        description=(
            f"Regenerate the stubs for {PROTO_FILE} with grpcio-tools=={GRPCIO_TOOLS_VERSION}."
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the committed stubs differ from a fresh run",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=PROTO_ROOT,
        help="root to write to or check (default: the package's proto directory)",
    )
    parser.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help=f"run with a grpcio-tools other than {GRPCIO_TOOLS_VERSION}",
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_files(args.out, allow_version_mismatch=args.allow_version_mismatch)
            for rel in stale:
                print(f"stale: {args.out / rel}", file=sys.stderr)
            if stale:
                print("regenerate with: python -m qr_urandom_server.proto.regen", file=sys.stderr)
                return 1
            print("generated stubs are up to date")
            return 0
        for path in write(args.out, allow_version_mismatch=args.allow_version_mismatch):
            print(f"wrote {path}")
        return 0
    except RegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
