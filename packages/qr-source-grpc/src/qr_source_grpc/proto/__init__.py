"""The generic request/response messages, compiled from ``generic_entropy.proto``."""
