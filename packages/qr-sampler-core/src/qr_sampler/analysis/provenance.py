"""What a report reports on: the input files, the run they came from, and the analysis.

A reader of ``report.html`` or ``summary.json`` must be able to tell, without the
command line that made it, which records were analysed, with which settings, and when.
"""

from __future__ import annotations

import datetime
import platform
from collections import Counter
from typing import Any

from qr_sampler.analysis.collect import RUN_FIELDS, Collection
from qr_sampler.plugins.registry import CORE_DISTRIBUTION, installed_version

#: What stands for a fact the records do not hold.
NOT_RECORDED = "not in these records"
#: Until records carry a hash chain there is nothing to check them against.
NO_CHAIN = "not checked: these records carry no hash chain or run manifest"


def provenance(collection: Collection) -> dict[str, Any]:
    """The header of ``summary.json`` and ``report.html``."""
    config_hashes: Counter[str] = Counter()
    run: dict[str, Any] = dict.fromkeys(RUN_FIELDS)
    for facts in collection.files:
        config_hashes.update(facts.config_hashes)
        run.update(facts.run)
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
        "integrity": NO_CHAIN,
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
