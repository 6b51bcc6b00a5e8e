"""Regenerate, or check, every package's committed protobuf/gRPC stubs.

Usage (from anywhere in the checkout)::

    pip install 'grpcio-tools==1.71.2'                  # the pinned generator
    python tools/regen_protos.py                        # rewrite every package's stubs
    python tools/regen_protos.py --check                # exit 1 if any are stale or missing
    python tools/regen_protos.py --check qr-source-grpc # one package only

``--out DIR`` reads and writes the generated files under ``DIR`` laid out like the
repository (the tests point it at a temporary directory); the ``.proto`` sources are always
read from the checkout. The work lives in the :mod:`proto_stubs` package next to this file;
this file is only the command, kept at the path the READMEs and the tests name.
"""

from __future__ import annotations

import sys

from proto_stubs.cli import main

if __name__ == "__main__":
    sys.exit(main())
