"""Generated code for ``qr_entropy/v1/entropy_service.proto``; do not edit by hand."""
