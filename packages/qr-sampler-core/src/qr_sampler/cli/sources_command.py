"""``qr-sampler sources``: the installed entropy sources and plugins that failed to load."""

from __future__ import annotations

import argparse
from typing import Any

from qr_sampler.cli.output import print_json, print_table
from qr_sampler.plugins.registry import get_registry


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "sources",
        help="list installed entropy sources",
        description="List every registered entropy source with the plugin and distribution "
        "that provides it, and every plugin that failed to load.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    registry = get_registry()
    sources = [
        {
            "name": name,
            "plugin": component.provider.plugin,
            "distribution": component.provider.distribution,
            "version": component.provider.version,
        }
        for name, component in sorted(registry.entropy_sources.items())
    ]
    failures = [
        {
            "plugin": failure.plugin,
            "distribution": failure.distribution,
            "version": failure.version,
            "error": failure.error,
        }
        for failure in registry.failures
    ]
    if args.json:
        print_json({"sources": sources, "failed_plugins": failures})
        return 0
    print_table(
        ("SOURCE", "PLUGIN", "DISTRIBUTION", "VERSION"),
        [
            [str(s[key] or "-") for key in ("name", "plugin", "distribution", "version")]
            for s in sources
        ],
    )
    if failures:
        print("\nplugins that failed to load (skipped):")
        for failure in failures:
            dist = failure["distribution"]
            origin = f" ({dist} {failure['version']})" if dist else ""
            print(f"  {failure['plugin']}{origin}: {failure['error']}")
    return 0
