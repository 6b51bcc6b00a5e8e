"""Opening what the source reads, as a non-blocking file descriptor, with errors that
say what to do: the device, a serial QRNG configured through pyserial, or a command."""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shlex
import stat
import subprocess
import tempfile
from collections import deque
from typing import IO

import serial

from qr_source_device.settings import DeviceSourceSettings

#: Lines of a command's standard error kept for the message when it exits.
STDERR_LINES = 5
#: Reads of 64 KiB that empty a pipe's buffer (64 KiB by default, 1 MiB at most).
DISCARD_READS = 16


class StreamError(Exception):
    """The stream cannot be opened or has ended; the message says what to do."""


def why_not(path: str, error: OSError) -> str:
    """What an ``OSError`` opening ``path`` means for a user, and the fix."""
    if error.errno == errno.ENOENT:
        return (
            f"{path} does not exist: is the QRNG plugged in and its driver loaded? "
            "(`dmesg | tail` shows the name a USB device got; set QR_DEVICE_PATH to it; in a "
            f"container pass the device in, e.g. `--device {path}`)"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return _permission_hint(path)
    return f"cannot open {path}: {error.strerror or error}"


def _permission_hint(path: str) -> str:
    user = pwd.getpwuid(os.geteuid()).pw_name
    try:
        info = os.stat(path)
        group = grp.getgrgid(info.st_gid).gr_name
    except (OSError, KeyError):
        group = "the device's group"
    name = os.path.basename(path)
    return (
        f"no permission to read {path} as user {user}: add the user to {group} "
        f"(`sudo usermod -aG {group} {user}`, then log in again), or give the device to a "
        f'group with a udev rule, e.g. in /etc/udev/rules.d/99-qrng.rules: KERNEL=="{name}", '
        f'MODE="0660", GROUP="{group}" (then `sudo udevadm control --reload && sudo udevadm '
        "trigger`)"
    )


class Stream:
    """One open stream; ``fd`` is non-blocking."""

    fd: int
    #: Bytes delivered from it so far.
    offset = 0

    def describe(self) -> str:
        raise NotImplementedError

    def discard_buffered(self) -> None:
        """Drop what arrived before this draw (nothing to do for a plain device)."""

    def ended(self) -> str:
        """Why a read returned nothing: the stream's end, in the user's terms."""
        return f"{self.describe()} ended (EOF)"

    def close(self) -> None:
        raise NotImplementedError


class FileStream(Stream):
    """A character device, a FIFO or a file, read with plain ``os.read``."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise StreamError(why_not(path, exc)) from None
        self.kind = _kind(os.fstat(self.fd).st_mode)

    def describe(self) -> str:
        return f"{self.kind} {self.path}"

    def ended(self) -> str:
        if self.kind == "FIFO":
            return (
                f"FIFO {self.path} has no writer (EOF): the program that feeds it stopped or "
                "has not started"
            )
        if self.kind == "file":
            return f"file {self.path} ended after {self.offset} bytes: every byte is used once"
        return super().ended()

    def close(self) -> None:
        os.close(self.fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "device"
    return "file"


class SerialStream(Stream):
    """A serial QRNG (TrueRNG, OneRNG): line settings and start-up commands by pyserial."""

    def __init__(self, settings: DeviceSourceSettings) -> None:
        self.path = settings.path
        try:
            self.port = serial.Serial(settings.path, settings.baudrate, timeout=0)
        except serial.SerialException as exc:
            error = exc if isinstance(exc.errno, int) else OSError(errno.EIO, str(exc))
            raise StreamError(why_not(settings.path, error)) from None
        for command in filter(None, (c.strip() for c in settings.serial_init.split(";"))):
            self.port.write(command.encode("ascii") + b"\n")
        self.port.flush()
        self.fd = self.port.fileno()
        os.set_blocking(self.fd, False)

    def describe(self) -> str:
        return f"serial port {self.path}"

    def discard_buffered(self) -> None:
        self.port.reset_input_buffer()

    def ended(self) -> str:
        return f"serial port {self.path} hung up (unplugged?)"

    def close(self) -> None:
        self.port.close()


class CommandStream(Stream):
    """A program's standard output (``infnoise``); it is started again after it exits."""

    def __init__(self, command: str) -> None:
        self.command = command
        # A file, not a pipe: a program that writes much to stderr must not block on it.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - held while the program runs
        try:
            self.process = subprocess.Popen(
                shlex.split(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
            )
        except OSError as exc:
            self.stderr.close()
            raise StreamError(f"cannot start QR_DEVICE_COMMAND {command!r}: {exc}") from None
        assert self.process.stdout is not None
        self.fd = self.process.stdout.fileno()
        os.set_blocking(self.fd, False)

    def describe(self) -> str:
        return f"command {self.command!r}"

    def discard_buffered(self) -> None:
        # What the pipe held when the draw began; a program faster than these reads
        # must not keep the draw here.
        for _ in range(DISCARD_READS):
            try:
                if not os.read(self.fd, 1 << 16):
                    return
            except BlockingIOError:
                return

    def ended(self) -> str:
        try:
            status = self.process.wait(1)
        except subprocess.TimeoutExpired:
            return f"command {self.command!r} closed its output"
        return f"command {self.command!r} exited with status {status}{_tail(self.stderr)}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    lines = deque(log.read().decode("utf-8", "replace").splitlines(), STDERR_LINES)
    return f": {' | '.join(lines)}" if lines else ""


def open_stream(settings: DeviceSourceSettings) -> Stream:
    if settings.mode == "serial":
        return SerialStream(settings)
    if settings.mode == "program":
        return CommandStream(settings.command)
    return FileStream(settings.path)
