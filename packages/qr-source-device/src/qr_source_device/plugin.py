"""The ``qr_sampler`` entry point: installing the package is all it takes."""

from __future__ import annotations

from collections.abc import Callable

from qr_sampler import hookimpl
from qr_source_device.settings import DeviceSourceSettings
from qr_source_device.source import DeviceEntropySource


@hookimpl
def register_entropy_sources(register: Callable[..., None]) -> None:
    register(DeviceEntropySource.name, DeviceEntropySource, settings=(DeviceSourceSettings,))
