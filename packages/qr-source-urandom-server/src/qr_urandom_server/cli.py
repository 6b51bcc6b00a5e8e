"""``qr-urandom-server``: run the reference entropy server from the command line.

Exit status: 0 after a clean shutdown (SIGTERM or SIGINT), 1 when the server cannot start
(e.g. the address is in use, a TLS file is unreadable), 2 for bad command-line arguments.
The API key is read from ``$QR_URANDOM_SERVER_API_KEY`` or ``--api-key-file``, never from
the command line, where ``ps`` would show it to every user of the machine.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from qr_urandom_server import __version__
from qr_urandom_server.launch import ServerBindError, create_server
from qr_urandom_server.limits import (
    DEFAULT_MAX_BYTES_PER_REQUEST,
    DEFAULT_MAX_WORKERS,
    DEFAULT_STREAM_IDLE_TIMEOUT_S,
    LARGEST_MAX_BYTES_PER_REQUEST,
)
from qr_urandom_server.security import (
    API_KEY_VARIABLE,
    DEFAULT_API_KEY_HEADER,
    SecurityConfigError,
    load_api_key,
    server_credentials,
)
from qr_urandom_server.server import EntropyServer
from qr_urandom_server.servicer import DEFAULT_DEVICE_ID, SERVICE_NAME

logger = logging.getLogger("qr_urandom_server")

PROG = "qr-urandom-server"
DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_GRACE_PERIOD_S = 5.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _int_in_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


class _RefuseKeyInArgv(argparse.Action):
    """``--api-key VALUE`` would put the key in ``ps`` output: refuse it, without echoing it."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error(
            f"the API key is not taken on the command line, where ps shows it to every "
            f"user; set ${API_KEY_VARIABLE} or use --api-key-file FILE"
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every flag is documented in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            f"Serve os.urandom bytes over gRPC as {SERVICE_NAME} "
            "(qr_entropy/v1/entropy_service.proto): unary GetEntropy and bidirectional "
            "StreamEntropy, with server reflection and the standard gRPC health service. "
            "Prints 'qr-urandom-server listening on ADDRESS' to stdout once serving; "
            "SIGTERM or SIGINT stops it gracefully (a second signal stops it at once)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help=(
            "where to listen: HOST:PORT (port 0 picks a free port) or unix:///path/to/socket. "
            "Without an API key and TLS, anyone who can reach the address can draw bytes: "
            "listen on another interface than loopback only with both"
        ),
    )
    parser.add_argument(
        "--max-bytes-per-request",
        type=_int_in_range(1, LARGEST_MAX_BYTES_PER_REQUEST),
        default=DEFAULT_MAX_BYTES_PER_REQUEST,
        metavar="N",
        help=(
            "largest bytes_needed accepted in one request; larger (and <= 0) requests get "
            "INVALID_ARGUMENT. Clients receive at most 4 MiB per message unless they raise "
            "their own limit"
        ),
    )
    parser.add_argument(
        "--workers",
        type=_int_in_range(1, 4096),
        default=DEFAULT_MAX_WORKERS,
        metavar="N",
        help="worker threads; each open StreamEntropy stream holds one while it is open",
    )
    parser.add_argument(
        "--max-streams",
        type=_int_in_range(0, 4095),
        default=None,
        metavar="N",
        help=(
            "most StreamEntropy streams open at once (default: 3/4 of --workers); more are "
            "refused with RESOURCE_EXHAUSTED so that unary calls and health keep a worker. "
            "Must be below --workers"
        ),
    )
    parser.add_argument(
        "--stream-idle-timeout",
        type=_non_negative_float,
        default=DEFAULT_STREAM_IDLE_TIMEOUT_S,
        metavar="SECONDS",
        help="cancel a stream that sent no request for this long (0: never)",
    )
    parser.add_argument(
        "--api-key-file",
        metavar="FILE",
        help=(
            f"require this file's content (or ${API_KEY_VARIABLE}) as the API key on every "
            "call but health's"
        ),
    )
    parser.add_argument(
        "--api-key-header",
        default=DEFAULT_API_KEY_HEADER,
        metavar="NAME",
        help="call metadata key that carries the API key (as the client's)",
    )
    parser.add_argument("--api-key", nargs="?", action=_RefuseKeyInArgv, help=argparse.SUPPRESS)
    parser.add_argument("--tls-cert-file", metavar="FILE", help="PEM certificate chain: serve TLS")
    parser.add_argument("--tls-key-file", metavar="FILE", help="PEM private key of the certificate")
    parser.add_argument(
        "--tls-client-ca-file",
        metavar="FILE",
        help="PEM roots: require client certificates they signed (mutual TLS)",
    )
    parser.add_argument(
        "--device-id",
        default=DEFAULT_DEVICE_ID,
        help="value of device_id in every response",
    )
    parser.add_argument(
        "--grace-period",
        type=_non_negative_float,
        default=DEFAULT_GRACE_PERIOD_S,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long RPCs in flight may run before they are cancelled",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="logging level (logs go to stderr; DEBUG logs every request)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _configure_logging(level_name: str) -> None:
    level = getattr(logging, level_name)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logger.setLevel(level)


def serve(
    entropy_server: EntropyServer, stop_requested: threading.Event, grace_period: float
) -> None:
    """Start ``entropy_server``, block until ``stop_requested`` is set, then stop gracefully."""
    entropy_server.start()
    try:
        print(f"{PROG} listening on {entropy_server.address}", flush=True)
        while not stop_requested.wait(0.5):
            pass
        logger.info("shutting down (grace period %.1fs)", grace_period)
    finally:
        entropy_server.stop(grace_period)


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        parser.error("TLS needs both --tls-cert-file and --tls-key-file")
    if args.tls_client_ca_file and not args.tls_cert_file:
        parser.error("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
    _configure_logging(args.log_level)
    try:
        credentials = (
            server_credentials(args.tls_cert_file, args.tls_key_file, args.tls_client_ca_file)
            if args.tls_cert_file
            else None
        )
        entropy_server = create_server(
            args.address,
            max_bytes_per_request=args.max_bytes_per_request,
            max_workers=args.workers,
            max_streams=args.max_streams,
            stream_idle_timeout_s=args.stream_idle_timeout,
            device_id=args.device_id,
            api_key=load_api_key(args.api_key_file),
            api_key_header=args.api_key_header,
            credentials=credentials,
        )
    except (ServerBindError, SecurityConfigError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        # create_server's ValueError is a bad argument (a malformed address, say).
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop_requested.is_set():
            logger.warning("second %s: stopping now", signal.Signals(signum).name)
            entropy_server.abort()
            return
        logger.info("received %s", signal.Signals(signum).name)
        stop_requested.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        for signum in _SHUTDOWN_SIGNALS:
            previous[signum] = signal.signal(signum, on_signal)
    try:
        serve(entropy_server, stop_requested, args.grace_period)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
