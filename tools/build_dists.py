"""Build every package of the repository into one folder, as a release would.

Usage::

    python tools/build_dists.py [OUT]     # sdist + wheel of each package (default dist/)
    python tools/build_dists.py --wheel-only --no-isolation OUT

OUT is emptied of earlier builds of these packages first, so a stale version never sits
beside the new one. ``tox -e dist`` runs this and then ``twine check``; the integration
tests run it (wheels only) before installing from OUT into a clean virtual env.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = REPO / "packages"


def package_dirs() -> list[Path]:
    return sorted(path.parent for path in PACKAGES.glob("*/pyproject.toml"))


def _old_builds(out: Path, package: Path) -> list[Path]:
    # Wheel and sdist names use the distribution name with '-' turned into '_'.
    stem = package.name.replace("-", "_")
    return [*out.glob(f"{stem}-*.whl"), *out.glob(f"{stem}-*.tar.gz")]


def build_dists(out: Path, *, wheel_only: bool = False, isolation: bool = True) -> list[Path]:
    """Build each package into ``out``; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    for package in package_dirs():
        for old in _old_builds(out, package):
            old.unlink()
        command = [sys.executable, "-m", "build", "--outdir", str(out)]
        command += ["--wheel"] if wheel_only else []
        command += [] if isolation else ["--no-isolation"]
        subprocess.run([*command, str(package)], check=True, stdout=subprocess.DEVNULL)
    return sorted(path for package in package_dirs() for path in _old_builds(out, package))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "dist")
    parser.add_argument("--wheel-only", action="store_true", help="skip the sdists")
    parser.add_argument(
        "--no-isolation", action="store_true", help="use this environment's build backend"
    )
    args = parser.parse_args(argv)
    for path in build_dists(args.out, wheel_only=args.wheel_only, isolation=not args.no_isolation):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
