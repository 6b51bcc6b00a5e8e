"""Test kit for entropy source authors: ``pip install "qr-sampler-core[testing]"``.

Importing this package imports pytest; nothing in the runtime imports it.
"""

from qr_sampler.testing.conformance import EntropySourceConformance
from qr_sampler.testing.environment import isolated_environment

__all__ = ["EntropySourceConformance", "isolated_environment"]
