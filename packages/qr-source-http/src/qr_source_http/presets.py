"""The services the ``http`` source knows by name: each preset is only a configuration.

Every field of a preset is a ``QR_HTTP_*`` setting; a setting the user gives wins over
the preset's value, so a preset can be pointed at a mirror (``QR_HTTP_URL``) or held to
a smaller cap without code. ``{count}`` in the URL, a query value or a body value is
replaced by the number of units a call asks for.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

#: What a setting falls back to when neither the user nor the preset sets it.
GENERIC: MappingProxyType[str, Any] = MappingProxyType(
    {
        "url": "",
        "method": "GET",
        "query": "",
        "body": "",
        "auth": "header",
        "api_key_header": "x-api-key",
        "data_path": "",
        "encoding": "raw",
        "int_bits": 8,
        "success_path": "",
        "error_path": "",
        "unit_bytes": 1,
        "max_units_per_call": 1024,
    }
)

PRESETS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {
        # ANU Quantum Numbers: `length` elements of `size` 16-bit words, as hex strings;
        # 1,024 elements of 10 words is the most one call returns (20,480 bytes).
        "anu": MappingProxyType(
            {
                "url": "https://api.quantumnumbers.anu.edu.au",
                "query": "length={count}&type=hex16&size=10",
                "auth": "header",
                "api_key_header": "x-api-key",
                "data_path": "data",
                "encoding": "hex_list",
                "success_path": "success",
                "unit_bytes": 20,
                "max_units_per_call": 1024,
            }
        ),
        # Qrypt: `size` is in KiB (1 to 512); each list item is 1 KiB in base64.
        "qrypt": MappingProxyType(
            {
                "url": "https://api-eus.qrypt.com/api/v1/quantum-entropy",
                "query": "size={count}",
                "auth": "bearer",
                "data_path": "random",
                "encoding": "base64_list",
                "unit_bytes": 1024,
                "max_units_per_call": 512,
            }
        ),
        # Cisco Outshift: 8-bit blocks, at most 1,000 a call, each a decimal string.
        "outshift": MappingProxyType(
            {
                "url": "https://api.qrng.outshift.com/api/v1/random_numbers",
                "method": "POST",
                "body": (
                    '{"encoding": "raw", "format": "decimal", "bits_per_block": 8, '
                    '"number_of_blocks": "{count}"}'
                ),
                "auth": "header",
                "api_key_header": "x-id-api-key",
                "data_path": "random_numbers[].decimal",
                "encoding": "decimal_strings",
                "int_bits": 8,
                "unit_bytes": 1,
                "max_units_per_call": 1000,
            }
        ),
        # LfD (Leibniz University Hannover): bytes as one hex string, no key.
        "lfd": MappingProxyType(
            {
                "url": "https://lfdr.de/qrng_api/qrng",
                "query": "length={count}&format=HEX",
                "auth": "none",
                "data_path": "qrn",
                "encoding": "hex",
                "error_path": "error",
                "unit_bytes": 1,
                "max_units_per_call": 1024,
            }
        ),
        # ID Quantique Quantis appliance: raw octets; the host is the user's own.
        "quantis": MappingProxyType(
            {
                "url": "",
                "query": "size={count}",
                "auth": "none",
                "encoding": "raw",
                "unit_bytes": 1,
                "max_units_per_call": 1 << 20,
            }
        ),
    }
)

#: A preset with no endpoint of its own names the path QR_HTTP_URL must end in.
URL_HINTS = MappingProxyType(
    {"quantis": "https://<appliance-host>/api/2.0/streambytes"},
)
