"""Markdown tables from the latest benchmark results, for docs/performance.md.

python benchmarks/report.py            # print the tables
python benchmarks/report.py --write    # also replace them in docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import RESULTS

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def machine_lines(machine: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return [
        f"- machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}",
        f"- versions: {versions}",
        f"- command: `python benchmarks/{machine['command']}`",
    ]


def sampler_table(data: dict[str, Any]) -> list[str]:
    lines = [
        f"### qr-sampler `apply()` vs vLLM's V1 `Sampler` (vocab {data['vocab']:,}, CPU)",
        "",
        *machine_lines(data["machine"]),
        "",
        "| batch | config | qr p50 ms | qr p90 ms | vLLM p50 ms | vLLM p90 ms | ratio |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for case in data["cases"]:
        qr, vllm = case["qr_sampler"], case["vllm_sampler"]
        lines.append(
            f"| {case['batch']} | {case['config']} | {qr['median_ms']:.2f} | {qr['p90_ms']:.2f} "
            f"| {vllm['median_ms']:.2f} | {vllm['p90_ms']:.2f} | {case['ratio_median']:.2f} |"
        )
    if data.get("worst"):
        lines += [
            "",
            "Hard cases for the CDF walk next to the normal case, each step timed against vLLM's",
            "`Sampler` and a full `torch.sort` of the same logits in the same run:",
            "",
            "| batch | case | qr p50 ms | vLLM p50 ms | sort p50 ms | x sort | x vLLM |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for case in data["worst"]:
            lines.append(
                f"| {case['batch']} | {case['case']} | {case['qr_sampler']['median_ms']:.1f} "
                f"| {case['vllm_sampler']['median_ms']:.1f} "
                f"| {case['torch_sort']['median_ms']:.1f} "
                f"| {case['vs_sort']:.2f} | {case['vs_vllm']:.2f} |"
            )
    return lines


def entropy_table(data: dict[str, Any]) -> list[str]:
    lines = [
        "### Entropy fetch: one token (20,480 bytes) and one batch (64 x 20,480 bytes)",
        "",
        *machine_lines(data["machine"]),
        "",
        "| path | bytes | p50 ms | p99 ms | MB/s | x os.urandom |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in data["cases"]:
        lines.append(
            f"| {row['case']} | {row['bytes']:,} | {row['median_ms']:.3f} | {row['p99_ms']:.3f} "
            f"| {row['mb_per_s']:.0f} | {row['vs_os_urandom']:.2f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update {DOC.name}")
    args = parser.parse_args()
    sections = []
    for name, render in (("sampler_step", sampler_table), ("entropy_fetch", entropy_table)):
        path = RESULTS / f"{name}.json"
        if path.is_file():
            sections.append("\n".join(render(json.loads(path.read_text()))))
    tables = "\n\n".join(sections)
    print(tables)
    if args.write:
        text = DOC.read_text()
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        DOC.write_text(f"{head}{BEGIN}\n{tables}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
