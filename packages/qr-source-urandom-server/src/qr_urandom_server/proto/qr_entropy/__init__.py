"""Generated code for the ``qr_entropy`` protobuf package (written by tools/regen_protos.py)."""
