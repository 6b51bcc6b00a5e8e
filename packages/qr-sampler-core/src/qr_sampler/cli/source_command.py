"""``qr-sampler source new NAME``: scaffold a third-party entropy source package."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from qr_sampler.errors import QRSamplerError
from qr_sampler.plugins.registry import get_registry
from qr_sampler.scaffold import SourceNames, create_source_package


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "source",
        help="tools for writing an entropy source",
        description="Tools for authors of entropy source packages.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = actions.add_parser(
        "new",
        help="create a source package that installs and passes its tests as generated",
        description="Create qr-source-NAME/: a pyproject with the qr_sampler entry point, "
        "a source class with its own QR_NAME_* settings, a README and a test module "
        "running qr-sampler's conformance suite. The bytes come from an os.urandom "
        "placeholder marked REPLACE.",
    )
    new.add_argument("name", metavar="NAME", help="source name, e.g. acme-qrng")
    new.add_argument(
        "--dir",
        type=Path,
        default=Path(),
        metavar="D",
        help="create the package inside D (default: the working directory)",
    )
    new.set_defaults(run=run_new)


def _installed_as(names: SourceNames) -> str | None:
    try:
        version = importlib.metadata.version(names.distribution)
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        return f"the distribution {names.distribution} {version}"
    if importlib.util.find_spec(names.package) is not None:
        return f"the import package {names.package}"
    return None


def run_new(args: argparse.Namespace) -> int:
    names = SourceNames.from_name(args.name)
    # Two plugins registering one name is an error at load time; catch it now.
    taken = get_registry().entropy_sources.get(names.name)
    if taken is not None:
        owner = taken.provider.distribution or taken.provider.plugin
        raise QRSamplerError(f"source name {names.name!r} is already registered by {owner}")
    # Installing the new package would replace (uninstall) the one that has its name.
    installed = _installed_as(names)
    if installed:
        raise QRSamplerError(
            f"{installed} is already installed here, and `pip install` of the new package "
            f"would replace it; choose another name than {args.name!r}"
        )
    root = create_source_package(names, args.dir)
    print(f"created {root}")
    print("next:")
    print(f"  cd {root}")
    print('  pip install -e ".[test]" && pytest')
    print(f"  QR_ENTROPY_SOURCE_TYPE={names.name} qr-sampler probe")
    print(f"then replace the parts marked REPLACE in src/{names.package}/source.py")
    return 0
