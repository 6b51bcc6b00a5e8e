"""The grpcio-tools release the stubs are pinned to, and a check that it is the one installed."""

from __future__ import annotations

import importlib.metadata

#: The grpcio-tools release the committed stubs were generated with. Other releases emit
#: different code, so a comparison against them would always report the stubs as stale.
GRPCIO_TOOLS_VERSION = "1.71.2"


class RegenError(RuntimeError):
    """grpcio-tools is missing or is not the pinned release, or protoc failed."""


def installed_grpcio_tools_version() -> str | None:
    """The installed grpcio-tools version, or None when it is not installed."""
    try:
        return importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        return None


def require_grpcio_tools(*, allow_version_mismatch: bool) -> None:
    """Raise :class:`RegenError` unless the pinned grpcio-tools (or, if allowed, any) is here."""
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
