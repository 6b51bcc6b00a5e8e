"""Real HTTP(S) servers on 127.0.0.1 that speak each service's documented wire format.

A ``FakeService`` runs ``http.server`` in a thread; what it answers is a function of the
request, so one test can swap in a failure (a 429, a hang, a trickle) at any moment.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    #: Send nothing at all until the server stops (a service that never answers).
    hang: bool = False
    #: Send the body one byte at a time, this long apart (a slow trickle).
    trickle_s: float = 0.0


def json_reply(document: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(status=status, body=json.dumps(document).encode(), headers=dict(headers))


Handler = Callable[[Request], Reply]


class FakeService:
    """An HTTP server on a free loopback port; ``handler`` may be replaced at any time."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@contextmanager
def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> Iterator[FakeService]:
    service = FakeService(handler, tls).start()
    try:
        yield service
    finally:
        service.stop()


def _make_handler(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handle(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every reply.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read what they need from ``service.requests``."""

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            parts = urlsplit(self.path)
            request = Request(
                self.command,
                parts.path,
                {key: values[-1] for key, values in parse_qs(parts.query).items()},
                {key.lower(): value for key, value in self.headers.items()},
                self.rfile.read(size),
            )
            service.requests.append(request)
            reply = service.handler(request)
            if reply.hang:
                service.stopping.wait(60)
                self.close_connection = True
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not reply.trickle_s:
                self.wfile.write(reply.body)
                return
            for index in range(len(reply.body)):
                if service.stopping.wait(reply.trickle_s):
                    break
                self.wfile.write(reply.body[index : index + 1])
                self.wfile.flush()
            self.close_connection = True

    return Handle


# --- TLS ------------------------------------------------------------------------------


def self_signed(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a throw-away certificate for 127.0.0.1, and the PEM a
    client must trust (the certificate itself: it signs itself)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qr fake QRNG")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "fake.crt", folder / "fake.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


# --- the services' documented formats -----------------------------------------------


def _refuse(status: int, message: str) -> Reply:
    return json_reply({"message": message}, status)


def anu(key: str) -> Handler:
    """ANU Quantum Numbers: GET ?length=L&type=hex16&size=S with x-api-key."""

    def answer(request: Request) -> Reply:
        if request.headers.get("x-api-key") != key:
            return _refuse(403, "Forbidden")
        length, size = int(request.query["length"]), int(request.query.get("size", "1"))
        if request.query.get("type") != "hex16" or not 1 <= length <= 1024 or not 1 <= size <= 10:
            return json_reply({"success": False, "message": "length 1-1024, size 1-10"})
        data = [os.urandom(2 * size).hex() for _ in range(length)]
        return json_reply({"success": True, "type": "hex16", "length": str(length), "data": data})

    return answer


def qrypt(token: str) -> Handler:
    """Qrypt: GET ?size=N (KiB, 1-512) with Authorization: Bearer."""

    def answer(request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {token}":
            return _refuse(401, "Unauthorized")
        size = int(request.query["size"])
        if not 1 <= size <= 512:
            return _refuse(400, "size must be 1-512")
        blocks = [base64.b64encode(os.urandom(1024)).decode() for _ in range(size)]
        return json_reply({"random": blocks, "size": size})

    return answer


def outshift(key: str) -> Handler:
    """Cisco Outshift: POST a JSON body with x-id-api-key; blocks as decimal strings."""

    def answer(request: Request) -> Reply:
        if request.method != "POST" or request.headers.get("x-id-api-key") != key:
            return _refuse(401, "Unauthorized")
        body = request.json()
        blocks = body["number_of_blocks"]
        wanted = {"encoding": "raw", "format": "decimal", "bits_per_block": 8}
        if {k: body.get(k) for k in wanted} != wanted or not 1 <= blocks <= 1000:
            return _refuse(400, "bad request")
        numbers = [{"decimal": str(value)} for value in os.urandom(blocks)]
        return json_reply({"random_numbers": numbers, "encoding": "raw"})

    return answer


def lfd() -> Handler:
    """LfD: GET ?length=N&format=HEX, no key; errors as {"error": ...}."""

    def answer(request: Request) -> Reply:
        length = int(request.query["length"])
        if request.query.get("format") != "HEX" or not 1 <= length <= 1024:
            return json_reply({"error": "length must be 1-1024 and format HEX"})
        return json_reply({"qrn": os.urandom(length).hex().upper(), "length": length})

    return answer


def quantis() -> Handler:
    """Quantis appliance: GET /api/2.0/streambytes?size=N, raw octets."""

    def answer(request: Request) -> Reply:
        if request.path != "/api/2.0/streambytes":
            return Reply(404, b"not found", "text/plain")
        return Reply(
            body=os.urandom(int(request.query["size"])), content_type="application/octet-stream"
        )

    return answer


def unusual(token: str) -> Handler:
    """A service no preset knows: POST {"want": {"words": N}}, X-Token header, 32-bit
    integers nested in objects under result.words."""

    def answer(request: Request) -> Reply:
        if request.headers.get("x-token") != token:
            return _refuse(401, "who are you")
        words = request.json()["want"]["words"]
        values = [int.from_bytes(os.urandom(4), "big") for _ in range(words)]
        return json_reply({"result": {"words": [{"value": v} for v in values]}, "ok": True})

    return answer


if __name__ == "__main__":
    # `python http_fakes.py PORT`: the ANU fake as a process of its own, which a test can
    # kill outright (the engine tests); the key it accepts is in FAKE_KEY.
    import sys

    service = FakeService(anu(os.environ["FAKE_KEY"]), port=int(sys.argv[1])).start()
    print(f"fake ANU service on {service.url}", flush=True)
    threading.Event().wait()
