"""``qr-sampler profile``: list, create and check deployment profiles."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from qr_sampler.cli.output import print_table
from qr_sampler.errors import QRSamplerError
from qr_sampler.plugins.known_variables import read_env_file
from qr_sampler.plugins.registry import get_registry
from qr_sampler.profiles.catalog import (
    DEFAULT_DEPLOYMENTS,
    TEMPLATE,
    create_profile,
    deployments_dir,
    find_profile,
    list_profiles,
)
from qr_sampler.profiles.check import check_profile
from qr_sampler.settings.base import DEPLOYMENTS_VARIABLE
from qr_sampler.settings.config import QRSamplerConfig

_SOURCE_TYPE = "QR_ENTROPY_SOURCE_TYPE"
_WHERE = (
    f"Profiles are read from --deployments DIR, else ${DEPLOYMENTS_VARIABLE}, "
    f"else ./{DEFAULT_DEPLOYMENTS} in the working directory or the nearest folder above it "
    "up to the repository's root (so any directory inside the repository works)."
)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "profile",
        help="list, create and check deployment profiles",
        description="A profile is a folder with an .env (settings) and a sources.txt (the "
        f"source packages its Docker image installs). {_WHERE}",
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--deployments",
        metavar="DIR",
        help=f"the profiles folder (default ${DEPLOYMENTS_VARIABLE}, else ./{DEFAULT_DEPLOYMENTS} "
        "here or in a folder above, within the repository)",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        parents=[where],
        help="every profile with its sources and entropy source",
        description=f"List every profile: name, sources.txt entries, entropy source. {_WHERE}",
    )
    listing.set_defaults(run=run_list)

    new = actions.add_parser(
        "new",
        parents=[where],
        help=f"create a profile from {TEMPLATE}",
        description=f"Copy {TEMPLATE} to a new profile folder NAME (never over an existing "
        f"one) and set PROFILE=NAME in its .env. {_WHERE}",
    )
    new.add_argument("name", metavar="NAME")
    new.set_defaults(run=run_new)

    check = actions.add_parser(
        "check",
        parents=[where],
        help="validate a profile; exit 1 on any error",
        description="Check a profile: every QR_* name is known to core or an installed source "
        "(with a did-you-mean for typos), every value is valid, sources.txt provides the "
        "selected entropy source, PROFILE names the profile, and no real-looking key sits in "
        f"a file git would publish (a warning). Exit 1 on any error. {_WHERE}",
    )
    check.add_argument(
        "profile", metavar="NAME|PATH", help="a profile name, or a path (anything with a '/')"
    )
    check.set_defaults(run=run_check)


def run_list(args: argparse.Namespace) -> int:
    default_source = QRSamplerConfig.model_fields["entropy_source_type"].default
    rows = []
    for profile in list_profiles(deployments_dir(args.deployments)):
        values = read_env_file(str(profile.env_file))
        rows.append(
            [
                profile.name,
                ", ".join(profile.requirements()) or "-",
                values.get(_SOURCE_TYPE) or default_source,
            ]
        )
    print_table(("PROFILE", "SOURCES", "ENTROPY SOURCE"), rows)
    return 0


def run_new(args: argparse.Namespace) -> int:
    profile = create_profile(deployments_dir(args.deployments), args.name)
    print(f"created {profile.path} from {TEMPLATE}")
    print(f"next: edit its .env and sources.txt, then: qr-sampler profile check {args.name}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    try:
        profile = find_profile(deployments_dir(args.deployments), args.profile)
    except QRSamplerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    found = check_profile(profile, get_registry())
    for error in found.errors:
        print(f"error: {error}", file=sys.stderr)
    for warning in found.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    verdict = f"{len(found.errors)} error(s)" if found.errors else "ok"
    extra = f", {len(found.warnings)} warning(s)" if found.warnings else ""
    print(f"{profile.name}: {verdict}{extra}")
    return 1 if found.errors else 0
