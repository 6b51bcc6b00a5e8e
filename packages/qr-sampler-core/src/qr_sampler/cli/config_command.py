"""``qr-sampler config``: the effective configuration, secrets masked, typos caught."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from qr_sampler.cli.output import print_json
from qr_sampler.config import QRSamplerConfig
from qr_sampler.environment import (
    environment_names,
    known_variables,
    read_env_file,
    settings_classes,
    unknown_variables,
)
from qr_sampler.errors import ConfigValidationError
from qr_sampler.plugins import get_registry
from qr_sampler.record_file import check_log_path
from qr_sampler.settings import env_file_path


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "config",
        help="show the effective configuration",
        description="Show the configuration core and every installed source would use, "
        "with secrets masked. Unknown QR_* variables in the environment or the env file "
        "are errors (exit 1).",
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="read this dotenv file instead of $QR_ENV_FILE (default .env)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = args.env_file if args.env_file is not None else env_file_path()
    if args.env_file is not None and not os.path.isfile(path):
        raise ConfigValidationError(f"env file {path!r} does not exist")
    registry = get_registry()
    origins = [("environment", environment_names())]
    if os.path.isfile(path):
        origins.append((path, list(read_env_file(path))))
    unknown = unknown_variables(origins, known_variables(registry))
    problems = [variable.message() for variable in unknown]

    effective: dict[str, dict[str, Any]] = {}
    for owner, classes in settings_classes(registry).items():
        values: dict[str, Any] = {}
        for settings in classes:
            try:
                loaded = settings.load(env_file=path)
            except ConfigValidationError as exc:
                problems.append(f"{owner}: {exc}")
                continue
            prefix = settings.env_prefix_value().upper()
            values.update({f"{prefix}{k.upper()}": v for k, v in loaded.redacted().items()})
            if isinstance(loaded, QRSamplerConfig):
                try:
                    check_log_path(loaded.log_path)
                except ConfigValidationError as exc:
                    problems.append(f"{owner}: {exc}")
        effective[owner] = values

    if args.json:
        print_json({"env_file": path, "settings": effective, "errors": problems})
    else:
        print(f"# env file: {path}{'' if os.path.isfile(path) else ' (not found)'}")
        for owner, values in effective.items():
            print(f"\n[{owner}]")
            for name, value in values.items():
                print(f"{name}={'' if value is None else value}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0
