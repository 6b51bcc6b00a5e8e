"""Which packages commit generated stubs, where their proto lives, and what protoc must produce.

Paths are relative to the repository root. Everything else (the pin, running protoc, the
post-processing, the comparison, the CLI) is shared, so adding a package means adding one
:class:`ProtoPackage` here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

#: The checkout this file belongs to (``tools/proto_stubs/`` is two levels down).
REPO_ROOT = Path(__file__).resolve().parents[2]


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
