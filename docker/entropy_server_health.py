#!/usr/bin/env python3
"""Health check of the entropy-server container, for Docker's HEALTHCHECK and compose.

Exit 0 when the standard gRPC health service reports the entropy service SERVING, 1
otherwise (no answer within two seconds included). Usage: entropy-server-health [ADDRESS]
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from qr_urandom_server.servicer import SERVICE_NAME

DEFAULT_ADDRESS = "127.0.0.1:50051"


def main(argv: list[str]) -> int:
    address = argv[1] if len(argv) > 1 else DEFAULT_ADDRESS
    request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=2)
        except grpc.RpcError as exc:
            print(f"{address}: {exc.code().name}", file=sys.stderr)
            return 1
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    if not serving:
        print(f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
