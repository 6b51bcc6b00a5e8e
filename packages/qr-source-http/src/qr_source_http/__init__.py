"""qr-source-http: the ``http`` entropy source for qr-sampler.

Fetches random bytes from a REST QRNG service. The request and the reply's format are
configuration (``QR_HTTP_*``); presets name the formats of known services.
"""

from qr_source_http.presets import PRESETS
from qr_source_http.settings import HttpApi, HttpSourceSettings
from qr_source_http.source import HttpEntropySource

__all__ = ["PRESETS", "HttpApi", "HttpEntropySource", "HttpSourceSettings"]
