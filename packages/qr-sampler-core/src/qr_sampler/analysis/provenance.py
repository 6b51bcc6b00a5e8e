"""What a report reports on: the input files, the run they came from, and the analysis.

A reader of ``report.html`` or ``summary.json`` must be able to tell, without the
command line that made it, which records were analysed, with which settings, and when.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections import Counter
from typing import Any

from qr_sampler.analysis.collect import RUN_FIELDS, Collection
from qr_sampler.plugins.registry import CORE_DISTRIBUTION, installed_version
from qr_sampler.records.chain import MANIFEST_SUFFIX
from qr_sampler.records.chain_check import check_chain
from qr_sampler.records.parts_check import link_parts

#: What stands for a fact the records do not hold.
NOT_RECORDED = "not in these records"
#: Records written before chaining have nothing to be checked against.
NO_CHAIN = "not checked: these records carry no hash chain or run manifest"


def provenance(collection: Collection) -> dict[str, Any]:
    """The header of ``summary.json`` and ``report.html``."""
    config_hashes: Counter[str] = Counter()
    run: dict[str, Any] = dict.fromkeys(RUN_FIELDS)
    for facts in collection.files:
        config_hashes.update(facts.config_hashes)
        run.update(facts.run)
        run.update({k: v for k, v in _manifest_run(facts.path).items() if v is not None})
    return {
        "analyzed_at": datetime.datetime.now(datetime.timezone.utc)
        .replace(microsecond=0)
        .isoformat(),
        "analyzed_with": {
            "qr_sampler_core": installed_version(CORE_DISTRIBUTION),
            "numpy": installed_version("numpy"),
            "scipy": installed_version("scipy"),
            "python": platform.python_version(),
        },
        "run": run,
        "config_hashes": dict(config_hashes.most_common()),
        "integrity": _integrity([facts.path for facts in collection.files]),
        "files": [
            {
                "path": facts.path,
                "records": facts.records,
                "skipped_lines": facts.skipped_lines,
                "size_bytes": facts.size_bytes,
                "modified": facts.modified,
                "sha256": facts.sha256,
                "arms": dict(facts.arms),
                "config_hashes": dict(facts.config_hashes),
            }
            for facts in collection.files
        ],
    }


def _manifest_run(path: str) -> dict[str, Any]:
    """What the last run manifest beside a records file says of the run."""
    try:
        with open(path + MANIFEST_SUFFIX, encoding="utf-8") as handle:
            lines = [line for line in handle if line.strip()]
        manifest = json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict):
        return {}
    engine = manifest.get("engine") or {}
    return {
        "model": engine.get("model"),
        "vllm_version": engine.get("vllm"),
        "qr_sampler_version": (manifest.get("packages") or {}).get(CORE_DISTRIBUTION),
        "started_at": manifest.get("started"),
        "host": manifest.get("host"),
    }


def _integrity(paths: list[str]) -> str:
    """The hash chains of the files, as ``qr-sampler verify`` checks them (no key: a
    signed run's signatures are left to ``verify --public-key``)."""
    if not any(os.path.exists(path + MANIFEST_SUFFIX) for path in paths):
        return NO_CHAIN
    reports = [(path, check_chain(path)) for path in paths]
    link_parts(reports)
    linked = 0
    for path, report in reports:
        if report.problems:
            return f"broken: {path}: {report.problems[0]} (run qr-sampler verify)"
        linked += report.linked
    return f"hash chain holds: {linked} record(s) linked (signatures: qr-sampler verify)"
