"""Reference protocol ``qr_entropy/v1/entropy_service.proto`` and its generated stubs."""
