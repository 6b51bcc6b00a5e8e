"""Reference ``qr_entropy.EntropyService`` gRPC server backed by ``os.urandom``.

The server speaks standard protobuf (``qr_entropy/v1/entropy_service.proto``), has server
reflection and the standard gRPC health service on, and is what the ``urandom`` deployment
profile runs next to vLLM. Programmatic use (tests, other packages' fault tests)::

    from qr_urandom_server import serve_in_background

    with serve_in_background("127.0.0.1:0") as server:
        target = server.address          # e.g. "127.0.0.1:43121"
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qr_urandom_server.launch import ServerBindError, create_server, serve_in_background
    from qr_urandom_server.limits import DEFAULT_MAX_BYTES_PER_REQUEST, DEFAULT_MAX_WORKERS
    from qr_urandom_server.server import EntropyServer
    from qr_urandom_server.servicer import (
        DEFAULT_DEVICE_ID,
        GET_ENTROPY_METHOD_PATH,
        SERVICE_NAME,
        STREAM_ENTROPY_METHOD_PATH,
        ByteSupply,
        EntropyServicer,
    )

try:
    __version__ = version("qr-source-urandom-server")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEFAULT_DEVICE_ID",
    "DEFAULT_MAX_BYTES_PER_REQUEST",
    "DEFAULT_MAX_WORKERS",
    "GET_ENTROPY_METHOD_PATH",
    "SERVICE_NAME",
    "STREAM_ENTROPY_METHOD_PATH",
    "ByteSupply",
    "EntropyServer",
    "EntropyServicer",
    "ServerBindError",
    "__version__",
    "create_server",
    "serve_in_background",
]


#: The module each lazily exported name lives in.
_HOMES = {
    "DEFAULT_DEVICE_ID": "servicer",
    "DEFAULT_MAX_BYTES_PER_REQUEST": "limits",
    "DEFAULT_MAX_WORKERS": "limits",
    "GET_ENTROPY_METHOD_PATH": "servicer",
    "SERVICE_NAME": "servicer",
    "STREAM_ENTROPY_METHOD_PATH": "servicer",
    "ByteSupply": "servicer",
    "EntropyServer": "server",
    "EntropyServicer": "servicer",
    "ServerBindError": "launch",
    "create_server": "launch",
    "serve_in_background": "launch",
}


def __getattr__(name: str) -> Any:
    # Imported lazily: importing only the message stubs under ``qr_urandom_server.proto``
    # (as qr-source-grpc's tests do) then leaves grpc, health and reflection unloaded.
    if name in _HOMES:
        return getattr(importlib.import_module(f"qr_urandom_server.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
