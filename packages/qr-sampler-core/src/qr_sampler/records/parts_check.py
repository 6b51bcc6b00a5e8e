"""Checks the links between the parts of a rotated run (``parts``), given in order.

Each part's chain is checked on its own (``chain_check``); what joins two parts is
the later one's first manifest, naming the earlier file (``previous_file``) and the
hash of its last line (``previous_head``). A part that is missing, given out of
order, or whose predecessor lost or gained lines at its end after the run moved on
breaks that link, and the problem is named on the later part.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from qr_sampler.records.chain import last_line, line_sha256
from qr_sampler.records.chain_check import ChainProblem, ChainReport, Continuation


def link_parts(chains: Sequence[tuple[str, ChainReport]]) -> list[int | None]:
    """Check each part's link to the part given before it, adding problems to the
    later part's report; returns, for each file, the index of the first file of its
    run's parts (files of one engine's rotated run share one), None for a part whose
    part before is not given before it (named as a problem already)."""
    names = [os.path.basename(path) for path, _ in chains]
    #: The index of the latest file given under each name.
    latest: dict[str, int] = {}
    continued_by: dict[int, str] = {}
    first: list[int | None] = []
    for index, (_, report) in enumerate(chains):
        link = report.continues
        before = latest.get(link.previous_file) if link is not None else None
        latest[names[index]] = index
        if link is None:
            first.append(index)
            continue
        first.append(first[before] if before is not None else None)
        problem: str | None
        if before is None:
            problem = _not_before(link, link.previous_file in names[index + 1 :])
        elif before in continued_by:
            problem = (
                f"{link.previous_file} is continued by {continued_by[before]} too: parts "
                "of two runs mixed?"
            )
        else:
            continued_by[before] = names[index]
            problem = _not_its_end(link, chains[before][0])
        if problem is not None:
            report.problems.append(ChainProblem(link.where, problem))
    return first


def _not_before(link: Continuation, later: bool) -> str:
    where = "comes after it: the parts are out of order" if later else "is missing"
    return (
        f"this part continues {link.previous_file} (previous_file), which is not given "
        f"before it ({link.previous_file} {where}); give every part of a rotated run, "
        "in order"
    )


def _not_its_end(link: Continuation, previous: str) -> str | None:
    """Why the link to the ``previous`` file's last line breaks, or None if it holds."""
    line = last_line(previous)
    head = line_sha256(line) if line is not None else None
    if head == link.previous_head:
        return None
    found = f"{head[:16]}..." if head is not None else "an empty file"
    named = f"{link.previous_head[:16]}..." if link.previous_head else "none"
    return (
        f"previous_head {named} is not the hash of the last line of {link.previous_file} "
        f"({found}): records were cut from the end of {link.previous_file}, or added "
        "to it, after the run went on in this part"
    )
