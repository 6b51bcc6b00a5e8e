"""What a bind address means: unix or TCP, reachable from other hosts or not, and how to dial it.

gRPC takes ``HOST:PORT`` and ``unix:`` targets alike; the server needs to tell them apart
to report the port it bound, to warn when it listens on the network, and to give local
clients a target they can actually dial (a wildcard host is not one).
"""

from __future__ import annotations

_UNIX_PREFIXES = ("unix:", "unix-abstract:")
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}  # noqa: S104


def is_unix_address(address: str) -> bool:
    """True for ``unix:`` / ``unix-abstract:`` targets."""
    return address.startswith(_UNIX_PREFIXES)


def split_tcp(address: str) -> tuple[str, int]:
    """``HOST:PORT`` as ``(HOST, PORT)``; :class:`ValueError` for anything else."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"address must be HOST:PORT or unix:///path/to/socket, got {address!r}")
    return host, int(port_text)


def is_local_only(bind_address: str) -> bool:
    """True for a unix socket or a loopback address: no other host can connect."""
    if is_unix_address(bind_address):
        return True
    host = split_tcp(bind_address)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def dial_address(bind_address: str, bound_port: int) -> str:
    """The target a local client dials to reach a server bound to ``bind_address``.

    The port is replaced by the one actually bound (so ``127.0.0.1:0`` becomes
    ``127.0.0.1:43121``) and a wildcard host by loopback. Unix targets are returned as is.
    """
    if is_unix_address(bind_address):
        return bind_address
    host, _ = split_tcp(bind_address)
    host = _WILDCARD_HOSTS.get(host, host)
    return f"{host}:{bound_port}"
