"""The ``qr-urandom-server`` command: in-process (for coverage) and as a real subprocess."""

from __future__ import annotations

import argparse
import logging
import os
import queue
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from qr_urandom_server import cli
from qr_urandom_server.proto.qr_entropy.v1 import entropy_service_pb2 as pb2
from qr_urandom_server.proto.qr_entropy.v1 import entropy_service_pb2_grpc as pb2_grpc

TIMEOUT = 10.0
EVERY_FLAG = (
    "--address",
    "--max-bytes-per-request",
    "--workers",
    "--max-streams",
    "--stream-idle-timeout",
    "--api-key-file",
    "--api-key-header",
    "--tls-cert-file",
    "--tls-key-file",
    "--tls-client-ca-file",
    "--device-id",
    "--grace-period",
    "--log-level",
    "--version",
    "--help",
)


def _command() -> list[str]:
    """The installed console script, else ``python -m qr_urandom_server``."""
    script = shutil.which("qr-urandom-server", path=os.path.dirname(sys.executable))
    if script is None:
        script = shutil.which("qr-urandom-server")
    return [script] if script else [sys.executable, "-m", "qr_urandom_server"]


def _get(target: str, n: int, seq: int = 0) -> pb2.EntropyResponse:
    with grpc.insecure_channel(target) as channel:
        stub = pb2_grpc.EntropyServiceStub(channel)
        response: pb2.EntropyResponse = stub.GetEntropy(
            pb2.EntropyRequest(bytes_needed=n, sequence_id=seq),
            timeout=TIMEOUT,
            wait_for_ready=True,
        )
        return response


def _health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="qr_entropy.EntropyService"),
            timeout=TIMEOUT,
            wait_for_ready=True,
        )
        status: int = reply.status
        return status


@pytest.fixture(autouse=True)
def _restore_logger_level() -> Iterator[None]:
    package_logger = logging.getLogger("qr_urandom_server")
    level = package_logger.level
    yield
    package_logger.setLevel(level)


@pytest.fixture
def guarded_signals() -> Iterator[list[int]]:
    """While main() is not running, a stray SIGTERM/SIGINT must not kill pytest."""
    received: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, record) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- argument parsing and --help ---------------------------------------------------------


def test_parser_has_exactly_the_documented_flags() -> None:
    flags = {
        option
        for action in cli.build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and action.help != argparse.SUPPRESS
    }
    assert flags == set(EVERY_FLAG)


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for action in cli.build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help text"
    for flag in EVERY_FLAG:
        assert flag in out
    assert "unix:///" in out
    assert "SIGTERM" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("qr-urandom-server ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-bytes-per-request", "0"], "between 1 and"),
        (["--max-bytes-per-request", "2147483648"], "between 1 and"),
        (["--max-bytes-per-request", "1k"], "expected an integer"),
        (["--workers", "0"], "between 1 and"),
        (["--grace-period", "-1"], "must be >= 0"),
        (["--grace-period", "nan"], "must be >= 0"),
        (["--grace-period", "soon"], "expected a number of seconds"),
        (["--log-level", "verbose"], "invalid choice"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_log_level_is_case_insensitive() -> None:
    args = cli.build_parser().parse_args(["--log-level", "debug"])
    assert args.log_level == "DEBUG"


def test_defaults() -> None:
    args = cli.build_parser().parse_args([])
    assert args.address == "127.0.0.1:50051"
    assert args.max_bytes_per_request == 1 << 20
    assert args.grace_period == 5.0


def test_address_in_use_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert cli.main(["--address", f"127.0.0.1:{port}"]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_malformed_address_is_a_bad_argument_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--address", "no-port-here"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err


# --- in-process main(): serves, then exits 0 on a signal ----------------------------------


def _run_main_and_signal(
    argv: list[str], target: str, during: Callable[[], None], signals: list[signal.Signals]
) -> tuple[int, float, list[BaseException]]:
    """Run cli.main(argv) in this (main) thread; a helper thread waits until it serves,
    runs ``during`` and then sends ``signals`` to this process."""
    errors: list[BaseException] = []

    def helper() -> None:
        try:
            assert _health(target) == health_pb2.HealthCheckResponse.SERVING
            during()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            for i, signum in enumerate(signals):
                if i:
                    time.sleep(1.0)  # let main() act on the previous signal first
                os.kill(os.getpid(), signum)

    thread = threading.Thread(target=helper, daemon=True)
    start = time.monotonic()
    thread.start()
    status = cli.main(argv)
    elapsed = time.monotonic() - start
    thread.join(TIMEOUT)
    return status, elapsed, errors


@pytest.mark.usefixtures("guarded_signals")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_main_in_process_serves_and_exits_0(
    signum: signal.Signals, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"unix://{tmp_path / 'cli.sock'}"
    seen: list[pb2.EntropyResponse] = []
    status, _, errors = _run_main_and_signal(
        ["--address", target, "--device-id", "cli-dev", "--max-bytes-per-request", "64"],
        target,
        lambda: seen.append(_get(target, 64, seq=5)),
        [signum],
    )
    assert errors == []
    assert status == 0
    assert len(seen[0].data) == 64
    assert seen[0].device_id == "cli-dev"
    assert seen[0].sequence_id == 5
    assert f"qr-urandom-server listening on {target}" in capsys.readouterr().out
    assert not (tmp_path / "cli.sock").exists()


def test_main_restores_signal_handlers(guarded_signals: list[int], tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    target = f"unix://{tmp_path / 'restore.sock'}"
    status, _, errors = _run_main_and_signal(
        ["--address", target], target, lambda: None, [signal.SIGTERM]
    )
    assert (status, errors) == (0, [])
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.usefixtures("guarded_signals")
def test_graceful_stop_lets_in_flight_rpc_finish_and_second_signal_forces(
    tmp_path: Path,
) -> None:
    """First SIGTERM: health NOT_SERVING, RPCs in flight continue; second: stop at once."""
    target = f"unix://{tmp_path / 'grace.sock'}"
    stream_open = threading.Event()
    outcome: dict[str, object] = {}

    def hold_stream_open() -> None:
        release = threading.Event()

        def requests() -> Iterator[pb2.EntropyRequest]:
            yield pb2.EntropyRequest(bytes_needed=4, sequence_id=1)
            release.wait(TIMEOUT)

        with grpc.insecure_channel(target) as channel:
            call = pb2_grpc.EntropyServiceStub(channel).StreamEntropy(requests(), timeout=TIMEOUT)
            outcome["first"] = next(call).sequence_id
            stream_open.set()
            try:
                list(call)
                outcome["end"] = "ok"
            except grpc.RpcError as exc:
                outcome["end"] = exc.code()
            finally:
                release.set()

    holder = threading.Thread(target=hold_stream_open, daemon=True)

    def during() -> None:
        holder.start()
        assert stream_open.wait(TIMEOUT)

    status, elapsed, errors = _run_main_and_signal(
        ["--address", target, "--grace-period", "60"],
        target,
        during,
        [signal.SIGTERM, signal.SIGTERM],
    )
    holder.join(TIMEOUT)
    assert errors == []
    assert status == 0
    assert elapsed < 30, "the second signal should cut the 60 s grace period short"
    assert outcome["first"] == 1
    assert outcome["end"] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


# --- the real console script in a subprocess ---------------------------------------------


class _Server:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*_command(), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def wait_listening(self) -> str:
        try:
            line = self._lines.get(timeout=30)
        except queue.Empty:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=TIMEOUT)
            pytest.fail(f"server did not report listening; stderr:\n{err}")
        prefix = "qr-urandom-server listening on "
        assert line.startswith(prefix), line
        return line[len(prefix) :].strip()

    def stop(self, signum: int) -> tuple[int, str]:
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


@pytest.fixture
def spawn() -> Iterator[Callable[[list[str]], _Server]]:
    started: list[_Server] = []

    def start(argv: list[str]) -> _Server:
        server = _Server(argv)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(timeout=TIMEOUT)
        for stream in (server.proc.stdout, server.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_subprocess_tcp_serves_and_exits_0(
    spawn: Callable[[list[str]], _Server], signum: signal.Signals
) -> None:
    server = spawn(["--address", "127.0.0.1:0", "--device-id", "sub", "--log-level", "debug"])
    target = server.wait_listening()
    assert target.startswith("127.0.0.1:")
    assert not target.endswith(":0")
    response = _get(target, 48, seq=3)
    assert (len(response.data), response.sequence_id, response.device_id) == (48, 3, "sub")
    assert _health(target) == health_pb2.HealthCheckResponse.SERVING
    code, stderr = server.stop(signum)
    assert code == 0, stderr
    assert "GetEntropy bytes_needed=48" in stderr
    assert signal.Signals(signum).name in stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_subprocess_unix_socket_serves_and_exits_0(
    spawn: Callable[[list[str]], _Server], tmp_path: Path, signum: signal.Signals
) -> None:
    sock = tmp_path / "sub.sock"
    server = spawn(["--address", f"unix://{sock}", "--max-bytes-per-request", "100"])
    target = server.wait_listening()
    assert target == f"unix://{sock}"
    assert len(_get(target, 100).data) == 100
    with pytest.raises(grpc.RpcError) as err:
        _get(target, 101)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    code, stderr = server.stop(signum)
    assert code == 0, stderr
    assert not sock.exists()


def test_subprocess_help_lists_every_flag() -> None:
    result = subprocess.run(
        [*_command(), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for flag in EVERY_FLAG:
        assert flag in result.stdout


def test_dunder_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    argv = sys.argv
    sys.argv = ["qr-urandom-server", "--version"]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module("qr_urandom_server", run_name="__main__")
    finally:
        sys.argv = argv
    assert exit_info.value.code == 0
    assert "qr-urandom-server" in capsys.readouterr().out


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qr_urandom_server", "--max-bytes-per-request", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--max-bytes-per-request" in result.stderr
