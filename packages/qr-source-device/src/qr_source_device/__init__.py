"""qr-source-device: the ``device`` entropy source for qr-sampler.

Reads a QRNG on this machine: a character device (``/dev/hwrng``, a Quantis PCIe
``/dev/qrandom0``), a serial QRNG (TrueRNG, OneRNG), a named pipe, or a program's output.
"""

from qr_source_device.settings import DeviceSourceSettings
from qr_source_device.source import DeviceEntropySource

__all__ = ["DeviceEntropySource", "DeviceSourceSettings"]
