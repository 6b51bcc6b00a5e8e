"""``qr-sampler config``: the effective configuration, secrets masked, typos caught."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from qr_sampler.cli.output import print_json, setting_text
from qr_sampler.errors import ConfigValidationError
from qr_sampler.plugins.known_variables import process_settings, settings_classes, unknown_in_effect
from qr_sampler.plugins.registered import unregistered_names
from qr_sampler.plugins.registry import get_registry
from qr_sampler.records.record_file import check_log_path
from qr_sampler.settings.base import check_env_file, env_file_path
from qr_sampler.settings.config import QRSamplerConfig


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "config",
        help="show the effective configuration",
        description="Show every setting core and each installed source would use, with "
        "secrets masked. Exit 1 on any error: an unknown QR_* variable in the environment "
        "or the env file (with a did-you-mean), an invalid value, a name no plugin "
        "registered, a placeholder key, or an env file that does not exist.",
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="read this dotenv file instead of $QR_ENV_FILE (default .env)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.env_file is not None:
            check_env_file(args.env_file, "--env-file")
        path = args.env_file if args.env_file is not None else env_file_path()
    except ConfigValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    registry = get_registry()
    problems = [variable.message() for variable in unknown_in_effect(registry, path)]

    effective: dict[str, dict[str, Any]] = {"process": dict(process_settings())}
    for owner, classes in settings_classes(registry).items():
        values: dict[str, Any] = {}
        for settings in classes:
            try:
                loaded = settings.load(env_file=path)
            except ConfigValidationError as exc:
                problems.append(f"{owner}: {exc}")
                continue
            if isinstance(loaded, QRSamplerConfig):
                problems += unregistered_names(loaded, registry)
                try:
                    check_log_path(loaded.log_path)
                except ConfigValidationError as exc:
                    problems.append(f"{owner}: {exc}")
            prefix = settings.env_prefix_value().upper()
            values.update({f"{prefix}{k.upper()}": v for k, v in loaded.redacted().items()})
        effective[owner] = values

    if args.json:
        print_json({"env_file": path, "settings": effective, "errors": problems})
    else:
        print(f"# env file: {path}{'' if _exists(path) else ' (not found)'}")
        for owner, values in effective.items():
            print(f"\n[{owner}]")
            for name, value in values.items():
                print(f"{name}={setting_text(value)}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _exists(path: str) -> bool:
    try:
        check_env_file(path, "")
    except ConfigValidationError:
        return False
    return True
