"""Generated code for the ``qr_entropy`` protobuf package (see ``qr_urandom_server.proto.regen``)."""
