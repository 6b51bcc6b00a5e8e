"""``QR_GRPC_SERVER_ADDRESS``: one server, or several in gRPC's own target syntax.

gRPC resolves the target and balances calls over what it finds; this module only
checks the written form early (gRPC would fail at the first call, with a vaguer
message) and tells which hosts the target names.

- ``host:port``: one server (gRPC resolves the name; several addresses behind it
  are balanced like a list).
- ``ipv4:10.0.0.7:50051,10.0.0.8:50051`` and ``ipv6:[::1]:50051,[::1]:50052``: a
  fixed list of servers.
- ``dns:///entropy:50051`` (or ``dns://RESOLVER/entropy:50051``): every address
  the name resolves to, re-resolved when a connection drops.
- ``unix:///path`` and ``unix-abstract:name``: one local socket, taken as it is.
"""

from __future__ import annotations

import ipaddress

_SOCKET_SCHEMES = ("unix:", "unix-abstract:")
_LIST_SCHEMES = {"ipv4": ipaddress.IPv4Address, "ipv6": ipaddress.IPv6Address}
_FORMS = (
    "host:port, ipv4:A:PORT,B:PORT, ipv6:[A]:PORT,[B]:PORT, dns:///host:port "
    "or unix:///path/to/socket"
)


def _split_host_port(endpoint: str) -> tuple[str, str]:
    """``(host, port)``; the host of ``[v6]:port`` without brackets."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{endpoint!r} is not host:port; the address must be one of {_FORMS}")
    return host.strip("[]"), port


def _list_hosts(scheme: str, rest: str) -> list[str]:
    kind = _LIST_SCHEMES[scheme]
    hosts = []
    for endpoint in rest.split(","):
        host, _ = _split_host_port(endpoint.strip())
        try:
            kind(host)
        except ValueError:
            raise ValueError(
                f"{scheme}: lists {scheme.upper()} addresses only, and {host!r} is not one "
                "(for host names use dns:///name:port)"
            ) from None
        hosts.append(host)
    return hosts


def _dns_host(rest: str) -> str:
    # dns:host:port, dns:///host:port and dns://resolver/host:port are all gRPC's.
    name = rest.split("/", 3)[3] if rest.startswith("//") and rest.count("/") >= 3 else rest
    if name.startswith("/"):
        name = name.lstrip("/")
    host, _ = _split_host_port(name)
    return host


def target_hosts(target: str) -> list[str] | None:
    """The hosts ``target`` names, or None for a unix socket; ``ValueError`` for a
    form gRPC would not accept (or would read on a port other than the one meant)."""
    if target.startswith(_SOCKET_SCHEMES):
        return None
    scheme, colon, rest = target.partition(":")
    if colon and scheme in _LIST_SCHEMES:
        return _list_hosts(scheme, rest)
    if colon and scheme == "dns":
        return [_dns_host(rest)]
    url_scheme, found, after = target.partition("://")
    if found:
        # gRPC targets are not URLs; grpc would fail later with "Misformatted domain name".
        tls = " and set QR_GRPC_TLS=true" if url_scheme.lower() in {"https", "grpcs"} else ""
        raise ValueError(
            f"takes no {url_scheme}:// scheme: write {after.rstrip('/') or 'host:port'}{tls}"
        )
    host, _ = _split_host_port(target)
    return [host]


def is_local(target: str) -> bool:
    """True for unix sockets and targets whose every host is loopback, where a key
    cannot be sniffed in transit."""
    try:
        hosts = target_hosts(target)
    except ValueError:
        return False
    if hosts is None:
        return True
    return all(_is_loopback(host) for host in hosts)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a DNS name other than localhost
        return False
