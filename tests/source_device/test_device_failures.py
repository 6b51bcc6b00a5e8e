"""A device that stops writing fails its draw at the deadline (and later draws at once,
until it writes again); missing devices, permissions, EOF and dead programs are errors
that name the path and the fix."""

from __future__ import annotations

import errno
import grp
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SourceFactory, Writer

from qr_sampler import ConfigValidationError, EntropyUnavailableError, QRSamplerConfig
from qr_sampler.cli.main import main
from qr_sampler.entropy.factory import build_entropy_source
from qr_sampler.plugins.registry import load_registry
from qr_source_device import DeviceEntropySource, DeviceSourceSettings
from qr_source_device.streams import why_not

#: Generous bounds: a loaded machine may be slow, but a hang would blow far past them.
PROMPT_S = 20.0


def failure(source: DeviceEntropySource, n: int = 64) -> str:
    with pytest.raises(EntropyUnavailableError) as caught:
        source.get_random_bytes(n)
    return str(caught.value)


@pytest.mark.parametrize("stream", ["pty_device", "fifo"])
def test_a_device_that_stops_writing_fails_at_the_deadline_then_fast_then_recovers(
    stream: str, request: pytest.FixtureRequest, make_source: SourceFactory
) -> None:
    path, writer = request.getfixturevalue(stream)
    mode = "serial" if stream == "pty_device" else "file"
    source = make_source(mode=mode, path=path, timeout_ms=2000)
    assert len(source.get_random_bytes(1000)) == 1000
    writer.flowing.clear()
    time.sleep(0.3)  # what the writer had in flight reaches the buffer
    start = time.monotonic()
    message = failure(source, 1 << 20)
    assert 1.9 < time.monotonic() - start < PROMPT_S
    assert "bytes before the draw's deadline (2000 ms, QR_DEVICE_TIMEOUT_MS)" in message
    assert path in message
    assert source.health_check()["stalled"] is True
    # Stalled: the next draw only checks whether bytes flow again.
    start = time.monotonic()
    failure(source, 1 << 20)
    assert time.monotonic() - start < 1.9
    writer.flowing.set()
    assert len(source.get_random_bytes(4096)) == 4096
    assert source.health_check()["stalled"] is False


def test_a_missing_device_names_the_path_and_what_to_do(make_source: SourceFactory) -> None:
    source = make_source(path="/dev/qrandom7")
    message = failure(source)
    assert "/dev/qrandom7 does not exist: is the QRNG plugged in" in message
    assert "QR_DEVICE_PATH" in message
    assert "--device /dev/qrandom7" in message
    health = source.health_check()
    assert health["healthy"] is False
    assert "does not exist" in health["last_error"]


def test_a_missing_serial_port_says_the_same(make_source: SourceFactory) -> None:
    assert "/dev/ttyACM7 does not exist" in failure(make_source(mode="serial", path="/dev/ttyACM7"))


def test_no_permission_names_the_group_and_the_udev_rule(tmp_path: Path) -> None:
    device = tmp_path / "hwrng"
    device.write_bytes(b"")
    group = grp.getgrgid(device.stat().st_gid).gr_name
    message = why_not(str(device), PermissionError(errno.EACCES, "Permission denied"))
    assert f"no permission to read {device} as user" in message
    assert f"sudo usermod -aG {group}" in message
    assert 'KERNEL=="hwrng", MODE="0660"' in message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_no_permission_for_real_as_an_unprivileged_user(tmp_path: Path) -> None:
    """The check above, through a real EACCES: a process running as nobody."""
    device = tmp_path / "hwrng"
    device.write_bytes(os.urandom(64))
    device.chmod(0o600)
    tmp_path.chmod(0o755)
    code = (
        "from qr_source_device import DeviceEntropySource, DeviceSourceSettings\n"
        f"s = DeviceEntropySource(DeviceSourceSettings(path={str(device)!r}))\n"
        "try:\n    s.get_random_bytes(8)\nexcept Exception as e:\n    print(e)\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            user="nobody",
            env={**os.environ, "QR_ENV_FILE": os.devnull},
            timeout=60,
            check=False,
        )
    except PermissionError:
        pytest.skip("nobody may not run this interpreter here (it lives in a private folder)")
    assert f"no permission to read {device} as user nobody" in result.stdout, result.stderr


def test_a_file_is_read_once_and_its_end_is_an_error(
    make_source: SourceFactory, tmp_path: Path
) -> None:
    data = os.urandom(100)
    (tmp_path / "pool.bin").write_bytes(data)
    source = make_source(path=str(tmp_path / "pool.bin"))
    assert source.get_random_bytes(60) + source.get_random_bytes(40) == data
    assert f"file {tmp_path / 'pool.bin'} ended after 100 bytes" in failure(source, 1)


def test_a_fifo_without_a_writer_waits_for_one_then_says_when_it_left(
    make_source: SourceFactory, tmp_path: Path
) -> None:
    path = tmp_path / "gone.fifo"
    os.mkfifo(path)
    source = make_source(path=str(path), timeout_ms=300)
    assert "delivered 0 of 64 bytes before the draw's deadline" in failure(source)
    writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    os.write(writer, b"0123456789")
    os.close(writer)
    message = failure(source, 20)
    assert f"FIFO {path} has no writer (EOF): the program that feeds it stopped" in message


STREAM = (
    "import os, sys\n"
    "for _ in range({chunks}):\n"
    "    sys.stdout.buffer.write(os.urandom(4096)); sys.stdout.flush()\n"
    "sys.stderr.write('device unplugged\\n'); sys.exit(3)\n"
)


def command(chunks: int) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(STREAM.format(chunks=chunks))}"


def test_a_command_is_read_and_its_exit_reported_then_it_is_started_again(
    make_source: SourceFactory,
) -> None:
    source = make_source(mode="program", command=command(4), discard_buffered=False)
    assert len(source.get_random_bytes(4 * 4096)) == 4 * 4096
    message = failure(source, 10)
    assert "exited with status 3: device unplugged" in message
    assert len(source.get_random_bytes(100)) == 100  # a fresh run of the program


def test_a_program_faster_than_the_reader_still_gives_fresh_bytes_promptly(
    make_source: SourceFactory,
) -> None:
    """Dropping what the pipe buffered before a draw must not chase a fast program."""
    fast = "import os, sys\nwhile True:\n    sys.stdout.buffer.write(os.urandom(65536))\n"
    source = make_source(
        mode="program", command=f"{shlex.quote(sys.executable)} -c {shlex.quote(fast)}"
    )
    draws = [source.get_random_bytes(7) for _ in range(20)]
    assert len(set(draws)) == 20
    assert source.health_check()["bytes_delivered"] == 140


def test_a_command_that_cannot_start_says_so(make_source: SourceFactory) -> None:
    source = make_source(mode="program", command="/nonexistent/infnoise")
    assert "cannot start QR_DEVICE_COMMAND '/nonexistent/infnoise'" in failure(source)


def test_onerng_start_up_commands_are_sent_before_reading(make_source: SourceFactory) -> None:
    master, slave = os.openpty()
    writer = Writer(master, wait_for=b"cmdO\n")
    try:
        source = make_source(mode="serial", path=os.ttyname(slave), serial_init="cmd0; cmdO")
        assert len(source.get_random_bytes(5000)) == 5000
        assert writer.received.startswith(b"cmd0\ncmdO\n")
    finally:
        writer.stop()
        os.close(slave)
        os.close(master)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "program"}, "QR_DEVICE_MODE=program needs QR_DEVICE_COMMAND, e.g. 'infnoise'"),
        ({"path": ""}, "QR_DEVICE_MODE=file needs QR_DEVICE_PATH"),
        ({"mode": "program", "command": "infnoise 'unclosed"}, "cannot be split"),
        ({"timeout_ms": "0"}, "QR_DEVICE_TIMEOUT_MS"),
    ],
)
def test_bad_settings_say_what_to_set(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        DeviceSourceSettings.from_assignments(
            {f"QR_DEVICE_{name.upper()}": value for name, value in values.items()}
        )
    assert message in str(caught.value)


def test_registered_and_built_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    component = load_registry().entropy_sources["device"]
    assert component.provider.distribution == "qr-source-device"
    assert component.settings == (DeviceSourceSettings,)
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "device")
    monkeypatch.setenv("QR_DEVICE_PATH", "/dev/urandom")
    with build_entropy_source(QRSamplerConfig.load()) as source:
        draw = source.draw(7)
    assert (len(draw.data), draw.source, draw.fallback) == (7, "device", False)


def test_probe_reports_the_device(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "device")
    monkeypatch.setenv("QR_DEVICE_PATH", "/dev/urandom")
    assert main(["probe", "--json", "--bytes", "7", "--count", "5"]) == 0
    health = json.loads(capsys.readouterr().out)["health"]
    assert (health["reads"], health["bytes_delivered"], health["open"]) == (
        "/dev/urandom",
        35,
        True,
    )


def test_a_closed_source_fails_cleanly(make_source: SourceFactory) -> None:
    source = make_source(path="/dev/urandom")
    source.close()
    assert "closed" in failure(source)
    assert repr(source) == "DeviceEntropySource(mode='file', reads='/dev/urandom')"
