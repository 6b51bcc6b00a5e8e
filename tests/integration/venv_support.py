"""Fresh virtual environments that install this repository's packages as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 120
# pip as a user runs it; its cache is shared between runs, so repeats are quick.
PIP_INSTALL = ("python", "-m", "pip", "install", "--disable-pip-version-check", "-q")


@dataclass(frozen=True)
class Environment:
    """A virtual environment and a working directory with no ``.env`` in it."""

    bin: Path
    work: Path

    def run(
        self, *argv: str, cwd: Path | None = None, timeout: float = RUN_TIMEOUT_S, **env: str
    ) -> subprocess.CompletedProcess[str]:
        # The venv's tools, and nothing from the environment running the tests.
        clean = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("QR_") and name not in {"PYTHONPATH", "VIRTUAL_ENV"}
        }
        clean["PATH"] = f"{self.bin}{os.pathsep}{clean.get('PATH', '')}"
        return subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=cwd or self.work,
            env={**clean, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(
        self, *argv: str, cwd: Path | None = None, timeout: float = RUN_TIMEOUT_S, **env: str
    ) -> str:
        """Run, insist on exit 0, return stdout."""
        result = self.run(*argv, cwd=cwd, timeout=timeout, **env)
        assert result.returncode == 0, (
            f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    def pip_install(self, *requirements: str, find_links: Path) -> str:
        """``pip install --find-links DIST ...``: ours from DIST, the rest from the index."""
        return self.ok(
            *PIP_INSTALL, "--find-links", str(find_links), *requirements, timeout=INSTALL_TIMEOUT_S
        )


def new_environment(root: Path) -> Environment:
    """A virtual env under ``root`` (nothing but pip in it) and an empty work folder."""
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    work = root / "work"
    work.mkdir()
    return Environment(root / "venv" / "bin", work)


def build_wheels(out: Path) -> Path:
    """Every package's wheel in ``out``, built by the same tool as ``tox -e dist``."""
    script = REPO / "tools" / "build_dists.py"
    subprocess.run(
        [sys.executable, str(script), "--wheel-only", "--no-isolation", str(out)],
        check=True,
        timeout=INSTALL_TIMEOUT_S,
        stdout=subprocess.DEVNULL,
    )
    return out
