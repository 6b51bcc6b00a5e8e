"""``QR_DEVICE_*``: which device or stream the source reads, and how."""

from __future__ import annotations

import shlex
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from qr_sampler import QRSettings

Mode = Literal["file", "serial", "program"]


class DeviceSourceSettings(QRSettings):
    model_config = SettingsConfigDict(env_prefix="QR_DEVICE_")

    mode: Mode = Field(
        default="file",
        description="file (character device, FIFO, file), serial (a USB/serial QRNG), "
        "program (read the standard output of QR_DEVICE_COMMAND)",
    )
    path: str = Field(
        default="/dev/hwrng", description="Device, FIFO or file to read (file and serial modes)"
    )
    command: str = Field(
        default="", description="Program and arguments whose output is read (program mode)"
    )
    timeout_ms: float = Field(
        default=2000, gt=0, description="Longest a draw may wait for the device's bytes"
    )
    stall_probe_ms: float = Field(
        default=50,
        gt=0,
        description="After a draw timed out, how long later draws wait until bytes flow again",
    )
    baudrate: int = Field(default=115200, ge=50, description="Serial line speed (serial mode)")
    serial_init: str = Field(
        default="",
        description="Commands written once after opening, ';'-separated, each sent with a "
        "newline (OneRNG: cmd0;cmdO)",
    )
    discard_buffered: bool = Field(
        default=True,
        description="Serial and program modes: drop bytes that arrived before the draw, so "
        "every byte comes after the logits",
    )

    @field_validator("command")
    @classmethod
    def _command_parses(cls, value: str) -> str:
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into a program and arguments: {exc}") from None
        return value

    @model_validator(mode="after")
    def _mode_has_what_it_reads(self) -> DeviceSourceSettings:
        # Bare field names in these messages are shown as their variables (QR_DEVICE_...).
        if self.mode == "program" and not self.command.strip():
            raise ValueError(
                "mode=program needs command, e.g. 'infnoise' (its whitened output; never --raw)"
            )
        if self.mode != "program" and not self.path:
            raise ValueError(f"mode={self.mode} needs path")
        return self
