"""Regenerate, or check, every package's committed protobuf/gRPC stubs.

``tools/regen_protos.py`` is the command; the work is split by job:

- :mod:`proto_stubs.catalog`: which protos exist and what protoc must produce from each.
- :mod:`proto_stubs.toolchain`: the pinned grpcio-tools release, and whether it is installed.
- :mod:`proto_stubs.generate`: running protoc and post-processing its output, in memory.
- :mod:`proto_stubs.on_disk`: comparing that output with the files on disk, or writing it.
- :mod:`proto_stubs.cli`: the command line and its exit statuses.

A development tool, kept outside the packages: none of them needs grpcio-tools at run
time, and the packages stay independent of each other.
"""
