"""Regenerate, or check, every package's committed protobuf/gRPC stubs.

Usage (from anywhere in the checkout)::

    pip install 'grpcio-tools==1.71.2'                  # the pinned generator
    python tools/regen_protos.py                        # rewrite every package's stubs
    python tools/regen_protos.py --check                # exit 1 if any are stale or missing
    python tools/regen_protos.py --check qr-source-grpc # one package only

A development tool, kept outside the packages: none of them needs grpcio-tools at run
time, and the packages stay independent of each other. :data:`PACKAGES` says, per
package, where its proto lives and what protoc must produce from it; everything else
(the pin, running protoc, the post-processing, the comparison, the CLI) is shared.

Paths in :data:`PACKAGES` are relative to the repository root. ``--out DIR`` reads and
writes the generated files under ``DIR`` laid out like the repository (the tests point it
at a temporary directory); the ``.proto`` sources are always read from the checkout.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import importlib.resources
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: The grpcio-tools release the committed stubs were generated with. Other releases emit
#: different code, so a comparison against them would always report the stubs as stale.
GRPCIO_TOOLS_VERSION = "1.71.2"

#: The checkout this file belongs to.
REPO_ROOT = Path(__file__).resolve().parents[1]

_COMMAND = "python tools/regen_protos.py"


@dataclasses.dataclass(frozen=True)
class ProtoPackage:
    """One package's proto and the stubs committed next to it."""

    #: The distribution name, also the name the CLI accepts.
    name: str
    #: protoc's include root, relative to the repository root.
    include_dir: str
    #: The proto, relative to :attr:`include_dir`. This is also its name in the descriptor
    #: pool, which is what server reflection reports.
    proto: str
    #: The committed stubs, relative to :attr:`include_dir`.
    generated: tuple[str, ...]
    #: ``(old, new)`` text replacements applied to every generated file, in order.
    rewrites: tuple[tuple[str, str], ...] = ()

    def outputs(self) -> list[str]:
        """The generated files, relative to the repository root."""
        return [f"{self.include_dir}/{rel}" for rel in self.generated]


_URANDOM_PROTOC_MODULE = "qr_entropy.v1.entropy_service_pb2"

PACKAGES: dict[str, ProtoPackage] = {
    package.name: package
    for package in (
        # The include root is the package's proto directory, so the descriptor pool (and
        # with it server reflection) names the file qr_entropy/v1/entropy_service.proto.
        # protoc therefore believes qr_entropy is a top-level package: the service stub's
        # absolute import becomes a relative one, and the module name recorded for the
        # message classes becomes the real dotted path.
        ProtoPackage(
            name="qr-source-urandom-server",
            include_dir="packages/qr-source-urandom-server/src/qr_urandom_server/proto",
            proto="qr_entropy/v1/entropy_service.proto",
            generated=(
                "qr_entropy/v1/entropy_service_pb2.py",
                "qr_entropy/v1/entropy_service_pb2.pyi",
                "qr_entropy/v1/entropy_service_pb2_grpc.py",
            ),
            rewrites=(
                (
                    "from qr_entropy.v1 import entropy_service_pb2 as",
                    "from . import entropy_service_pb2 as",
                ),
                (
                    f"'{_URANDOM_PROTOC_MODULE}'",
                    f"'qr_urandom_server.proto.{_URANDOM_PROTOC_MODULE}'",
                ),
            ),
        ),
        # Compiled with src/ as the include root, so protoc already names the module
        # qr_source_grpc.proto.generic_entropy_pb2 and nothing needs rewriting.
        ProtoPackage(
            name="qr-source-grpc",
            include_dir="packages/qr-source-grpc/src",
            proto="qr_source_grpc/proto/generic_entropy.proto",
            generated=(
                "qr_source_grpc/proto/generic_entropy_pb2.py",
                "qr_source_grpc/proto/generic_entropy_pb2.pyi",
            ),
        ),
    )
}


class RegenError(RuntimeError):
    """grpcio-tools is missing or is not the pinned release, or protoc failed."""


def installed_grpcio_tools_version() -> str | None:
    """The installed grpcio-tools version, or None when it is not installed."""
    try:
        return importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        return None


def _require_grpcio_tools(*, allow_version_mismatch: bool) -> None:
    pin = f"pip install 'grpcio-tools=={GRPCIO_TOOLS_VERSION}'"
    version = installed_grpcio_tools_version()
    if version is None:
        raise RegenError(f"grpcio-tools is not installed; {pin}")
    if version != GRPCIO_TOOLS_VERSION and not allow_version_mismatch:
        raise RegenError(
            f"grpcio-tools {version} is installed but the committed stubs are pinned to "
            f"{GRPCIO_TOOLS_VERSION}; {pin} (or pass --allow-version-mismatch to move the "
            "pin deliberately)"
        )


def _postprocess(package: ProtoPackage, rel: str, text: str) -> str:
    for old, new in package.rewrites:
        text = text.replace(old, new)
    if rel.endswith("_pb2_grpc.py"):
        # protoc's service stubs are untyped; keep ``mypy --strict`` on the package clean.
        text = "# mypy: ignore-errors\n" + text
    return text


def render(package: ProtoPackage, *, allow_version_mismatch: bool = False) -> dict[str, str]:
    """Compile ``package``'s proto afresh: ``{repository-relative path: file text}``.

    Raises :class:`RegenError` when grpcio-tools is missing or, unless
    ``allow_version_mismatch``, is not :data:`GRPCIO_TOOLS_VERSION`, or when protoc fails.
    """
    _require_grpcio_tools(allow_version_mismatch=allow_version_mismatch)
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python tools/regen_protos.py [--check] [--out DIR] [PACKAGE...]``."""
    parser = argparse.ArgumentParser(
        prog=_COMMAND,
        description=(
            "Regenerate the committed protobuf stubs with "
            f"grpcio-tools=={GRPCIO_TOOLS_VERSION}. Exit status: 0 done or current, "
            "1 stale (with --check), 2 grpcio-tools or protoc trouble."
        ),
    )
    parser.add_argument(
        "packages",
        nargs="*",
        metavar="PACKAGE",
        help=f"which packages (default: all of {', '.join(PACKAGES)})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if a committed stub is missing or differs from a fresh run",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT,
        help="root to write to or check, laid out like the repository (default: the checkout)",
    )
    parser.add_argument(
        "--allow-version-mismatch",
        action="store_true",
        help=f"run with a grpcio-tools other than {GRPCIO_TOOLS_VERSION}",
    )
    args = parser.parse_args(argv)
    # Checked here rather than with ``choices``: how argparse matches an empty ``nargs="*"``
    # against choices differs between Python releases.
    unknown = sorted(set(args.packages) - set(PACKAGES))
    if unknown:
        parser.error(f"unknown package {', '.join(unknown)}; choose from {', '.join(PACKAGES)}")
    selected = [PACKAGES[name] for name in args.packages or PACKAGES]
    mismatch_ok = args.allow_version_mismatch
    try:
        if not args.check:
            fresh = render_all(selected, allow_version_mismatch=mismatch_ok)
            for path in write(fresh, args.out):
                print(f"wrote {path}")
            return 0
        stale = stale_files(selected, args.out, allow_version_mismatch=mismatch_ok)
    except RegenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key in stale:
        print(f"stale: {args.out / key}", file=sys.stderr)
    if stale:
        print(f"regenerate with: {_COMMAND} {' '.join(args.packages)}".rstrip(), file=sys.stderr)
        return 1
    print("generated stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
