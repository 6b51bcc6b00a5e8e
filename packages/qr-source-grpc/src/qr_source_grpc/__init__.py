"""qr-source-grpc: the ``quantum_grpc`` entropy source for qr-sampler.

Fetches random bytes from any gRPC server whose request carries the byte count in
field 1 and whose response carries the bytes in field 1.
"""

from qr_source_grpc.settings import CircuitBreakerSettings, GrpcSourceSettings
from qr_source_grpc.source import GrpcEntropySource

__all__ = ["CircuitBreakerSettings", "GrpcEntropySource", "GrpcSourceSettings"]
