"""``qr-sampler keys new``: a key pair that signs a run's manifest and chain heads."""

from __future__ import annotations

import argparse
from typing import Any

from qr_sampler.errors import QRSamplerError
from qr_sampler.records.signing import SIGNING_KEY_VARIABLE, write_key_pair


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "keys",
        help="make the Ed25519 key pair that signs runs",
        description="Signing keys for token records: the engine signs each run's manifest "
        f"and chain heads with the private key named by {SIGNING_KEY_VARIABLE}; a reviewer "
        "checks them with the public key alone (qr-sampler verify --public-key).",
    )
    verbs = parser.add_subparsers(dest="keys_command", required=True, metavar="VERB")
    new = verbs.add_parser(
        "new",
        help="write PREFIX.key (private, owner-only) and PREFIX.pub",
        description="Write a new key pair: PREFIX.key, the PEM private key (mode 0600; "
        f"point {SIGNING_KEY_VARIABLE} at it and keep it off published storage), and "
        "PREFIX.pub, the PEM public key to publish with the run. Never overwrites a file.",
    )
    new.add_argument("prefix", metavar="PREFIX", help="path and name stem, e.g. keys/run-signing")
    new.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        private, public = write_key_pair(args.prefix)
    except FileExistsError as exc:
        raise QRSamplerError(f"{exc.filename} exists; choose another PREFIX") from None
    except OSError as exc:
        raise QRSamplerError(f"cannot write {exc.filename}: {exc.strerror}") from None
    print(f"private key: {private} (set {SIGNING_KEY_VARIABLE}={private})")
    print(f"public key:  {public} (publish it with the run's records)")
    return 0
