"""Real processes for the real-engine tests: vLLM's OpenAI server and entropy servers.

Every process listens on 127.0.0.1, logs to a file the tests read, and runs in its
own process group so that stopping it also stops vLLM's engine-core children.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The tox env sets this; without it the suite skips (vLLM is not installed elsewhere).
ENGINE_ENV = "QR_ENGINE_TESTS"
MODEL_NAME = "tiny"
BIN = Path(sys.executable).parent
#: A small scheduler budget, so that a prompt of a few hundred tokens is prefilled in chunks.
MAX_BATCHED_TOKENS = 128


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any QR_* variable, plus ``overrides``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("QR_")}
    env.update(overrides)
    return env


class Process:
    """A child process in its own session, its output in ``log_path``."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv, self.env, self.log_path = list(argv), dict(env), log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_port(self, port: int, what: str, timeout_s: float = 30.0) -> None:
        """Return once the process accepts connections on 127.0.0.1:``port``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if not self.running():
                break
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not start:\n{self.log()[-2000:]}")


class UrandomServer(Process):
    """``qr-urandom-server`` on a fixed loopback port, so that a restart is found again."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        argv = [str(BIN / "qr-urandom-server"), "--address", self.address]
        super().__init__(argv, clean_env({}), log_dir / f"urandom-{self.port}.log")

    def start(self) -> None:
        super().start()
        self.wait_for_port(self.port, "qr-urandom-server")


class VllmServer(Process):
    """vLLM's OpenAI server with the plugin, one configuration per instance."""

    def __init__(
        self,
        model: Path,
        run_dir: Path,
        settings: Mapping[str, str],
        vllm_args: Sequence[str] = (),
    ) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.records_path = run_dir / "records.jsonl"
        # An empty env file: only the settings below count (a missing one is an error).
        env_file = run_dir / "empty.env"
        env_file.touch()
        env = clean_env(
            {
                "QR_ENV_FILE": str(env_file),
                "QR_LOG_PATH": str(self.records_path),
                "VLLM_CPU_KVCACHE_SPACE": "1",
                "VLLM_NO_USAGE_STATS": "1",
                **settings,
            }
        )
        argv = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model), "--served-model-name", MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--max-model-len", "1024", "--max-num-seqs", "32",
            "--max-num-batched-tokens", str(MAX_BATCHED_TOKENS), "--enforce-eager",
            *vllm_args,
        ]  # fmt: skip
        super().__init__(argv, env, run_dir / "vllm.log")
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 300.0) -> None:
        super().start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if not self.running():
                break
            time.sleep(1)
        tail = self.log()[-4000:]
        self.stop()
        raise RuntimeError(f"vLLM did not become healthy; its log ends:\n{tail}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=10) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def client(self) -> Any:
        import openai

        return openai.OpenAI(
            base_url=self.base_url + "/v1", api_key="unused", timeout=180, max_retries=0
        )

    def record_parts(self) -> list[Path]:
        """The records file and, under QR_LOG_ROTATE_MB, its later parts, in order."""
        later = sorted(self.records_path.parent.glob(f"{self.records_path.stem}.part*.jsonl"))
        return [self.records_path, *later] if self.records_path.exists() else []

    def records(self) -> list[dict[str, Any]]:
        lines = [line for part in self.record_parts() for line in part.read_text().splitlines()]
        # A line being written right now is skipped; it is read on the next call.
        return [json.loads(line) for line in lines if line.endswith("}")]

    def records_of(self, tag: str, at_least: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """The tag's records once ``at_least`` are written (records of a step's tokens
        are written when vLLM books them, a moment after the reply), in file order."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [r for r in self.records() if r["tag"] == tag]
            if len(found) >= at_least or time.monotonic() > deadline:
                # Anything written after the expected count would show up now.
                time.sleep(0.5)
                return [r for r in self.records() if r["tag"] == tag]
            time.sleep(0.2)


@contextmanager
def engine_on_urandom_server(
    model: Path, run_dir: Path, settings: Mapping[str, str]
) -> Iterator[tuple[VllmServer, UrandomServer]]:
    """A ``qr-urandom-server`` and an engine whose gRPC source draws from it
    (``settings`` on top); both are stopped on exit, whatever the test did."""
    entropy = UrandomServer(run_dir)
    entropy.start()
    engine = VllmServer(
        model,
        run_dir,
        {
            "QR_ENTROPY_SOURCE_TYPE": "quantum_grpc",
            "QR_GRPC_SERVER_ADDRESS": entropy.address,
            **settings,
        },
    )
    try:
        engine.start()
        yield engine, entropy
    finally:
        engine.stop()
        entropy.stop()
