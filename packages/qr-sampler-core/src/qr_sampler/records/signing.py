"""Ed25519 signatures over a run's manifest and chain heads (``QR_SIGNING_KEY``).

The ``cryptography`` package (``qr-sampler-core[signing]``) is imported only when a
key is used, so a run without signing needs nothing beyond core. What is signed is
the canonical JSON of an entry without its ``signature`` field (sorted keys, no
spaces), so a reviewer recomputes the signed bytes from the entry alone.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qr_sampler.errors import ConfigValidationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNING_KEY_VARIABLE = "QR_SIGNING_KEY"
_MISSING = "signing needs the cryptography package: pip install 'qr-sampler-core[signing]'"


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ConfigValidationError(_MISSING) from None
    return ed25519


def _serialization() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization


def signed_bytes(entry: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the entry less its signature, canonically."""
    body = {key: value for key, value in entry.items() if key != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class Signer:
    """The run's private key, loaded once at start-up."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            _serialization().Encoding.Raw, _serialization().PublicFormat.Raw
        )
        #: Hex of the raw 32-byte public key, which the manifest names.
        self.public_key_hex = raw.hex()

    @classmethod
    def from_file(cls, path: str) -> Signer:
        """The PEM private key at ``path``; a bad path or key stops start-up."""
        ed25519 = _ed25519()
        try:
            with open(path, "rb") as handle:
                key = _serialization().load_pem_private_key(handle.read(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigValidationError(
                f"{SIGNING_KEY_VARIABLE}={path!r}: not a readable unencrypted PEM private key "
                f"({exc}); make one with `qr-sampler keys new`"
            ) from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigValidationError(
                f"{SIGNING_KEY_VARIABLE}={path!r}: an Ed25519 key is needed, this is a "
                f"{type(key).__name__}"
            )
        return cls(key)

    def sign(self, entry: dict[str, Any]) -> dict[str, Any]:
        """``entry`` with its ``signature`` (hex) set."""
        entry["signature"] = self._key.sign(signed_bytes(entry)).hex()
        return entry


def load_public_key(path: str) -> Ed25519PublicKey:
    """A PEM public key file, as ``qr-sampler keys new`` writes it."""
    ed25519 = _ed25519()
    with open(path, "rb") as handle:
        try:
            key = _serialization().load_pem_public_key(handle.read())
        except ValueError as exc:
            raise ConfigValidationError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigValidationError(f"{path}: an Ed25519 public key is needed")
    return key  # type: ignore[no-any-return]


def signature_holds(key: Ed25519PublicKey, entry: Mapping[str, Any]) -> bool:
    """Whether ``entry`` carries a valid signature by ``key``."""
    from cryptography.exceptions import InvalidSignature

    signature = entry.get("signature")
    if not isinstance(signature, str):
        return False
    try:
        key.verify(bytes.fromhex(signature), signed_bytes(entry))
    except (InvalidSignature, ValueError):
        return False
    return True


def write_key_pair(prefix: str) -> tuple[str, str]:
    """A new key pair as ``PREFIX.key`` (private, owner-only) and ``PREFIX.pub``."""
    ed25519, serialization = _ed25519(), _serialization()
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path, public_path = f"{prefix}.key", f"{prefix}.pub"
    if os.path.exists(public_path):
        raise FileExistsError(errno.EEXIST, "exists", public_path)
    # Created owner-only and never over an existing key: losing a key loses a run's proof.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    with open(public_path, "xb") as handle:
        handle.write(public)
    return private_path, public_path
