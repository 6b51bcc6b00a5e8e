"""Records files that cannot be written: refused at start-up, never a failed engine step."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from core_support import forced, make_sampler

from qr_sampler.cli.main import main
from qr_sampler.records.record_file import LogPathError, check_log_path
from qr_sampler.records.sink import StepRecords
from qr_sampler.records.token_record import TokenRecord
from qr_sampler.sampling.sampler import QRSampler

DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full here")


def bad_paths(tmp_path: Path) -> dict[str, str]:
    return {
        "missing directory": str(tmp_path / "no-such-dir" / "tokens.jsonl"),
        "a directory": str(tmp_path),
        **({"a full device": str(DEV_FULL)} if DEV_FULL.exists() else {}),
    }


BAD = ["missing directory", "a directory", "a full device"]


def bad_path(tmp_path: Path, kind: str) -> str:
    paths = bad_paths(tmp_path)
    if kind not in paths:
        pytest.skip(f"no {kind} on this machine")
    return paths[kind]


def strict_json(line: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant} in a record")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("kind", BAD)
def test_sampler_refuses_an_unwritable_log_path_at_start_up(tmp_path: Path, kind: str) -> None:
    path = bad_path(tmp_path, kind)
    with pytest.raises(LogPathError, match="QR_LOG_PATH=") as caught:
        make_sampler(tmp_path, log_path=path)
    assert isinstance(caught.value, ValueError)
    assert path in str(caught.value)


@pytest.mark.parametrize("kind", BAD)
def test_config_command_reports_an_unwritable_log_path(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QR_LOG_PATH", bad_path(tmp_path, kind))
    code = main(["config"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "QR_LOG_PATH=" in err
    assert "cannot append token records there" in err
    assert "QR_FALLBACK_MODE=system" in out  # the rest is still shown


@pytest.mark.parametrize("kind", BAD)
def test_probe_command_reports_an_unwritable_log_path(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QR_LOG_PATH", bad_path(tmp_path, kind))
    code = main(["probe", "--count", "1"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: QR_LOG_PATH=")


def in_child(func: Callable[[], None], drop_root: bool = False) -> str:
    """Run ``func`` in a forked child; the repr of what it raised, or '' if nothing.

    With ``drop_root``, a root child first becomes ``nobody``: root writes any file
    whatever its mode, so a read-only file can only be tested without root's rights.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, whose coverage is not collected
        try:
            os.close(read)
            if drop_root and os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                func()
                outcome = ""
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            os.write(write, outcome.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory any user may enter (pytest's own tmp_path is root's alone)."""
    with tempfile.TemporaryDirectory(prefix="qr-records-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def test_a_read_only_log_file_is_refused(shared_dir: Path) -> None:
    log = shared_dir / "tokens.jsonl"
    log.write_text("")
    log.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    outcome = in_child(lambda: check_log_path(str(log)), drop_root=True)
    assert outcome.startswith("LogPathError: QR_LOG_PATH=")
    assert "Permission denied" in outcome
    # A writable file in the same place passes, so the refusal was about the mode.
    log.chmod(0o666)
    assert in_child(lambda: check_log_path(str(log)), drop_root=True) == ""


def test_checking_a_new_path_leaves_no_file_and_an_existing_one_untouched(
    tmp_path: Path,
) -> None:
    new = tmp_path / "tokens.jsonl"
    check_log_path(str(new))
    assert not new.exists()
    existing = tmp_path / "old.jsonl"
    existing.write_text('{"step":1}\n')
    check_log_path(str(existing))
    assert existing.read_text() == '{"step":1}\n'
    check_log_path("")  # no records file: nothing to check


def two_recorded_rows(tmp_path: Path) -> tuple[QRSampler, Path]:
    """A sampler writing records to a file, two default rows seated."""
    log = tmp_path / "tokens.jsonl"
    sampler, _ = make_sampler(tmp_path, log_path=str(log))
    sampler.table.put(0, sampler.defaults)
    sampler.table.put(1, sampler.defaults)
    return sampler, log


@needs_dev_full
def test_a_disk_that_fills_up_loses_records_but_never_a_step(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sampler, log = two_recorded_rows(tmp_path)
    sampler.sample(torch.randn(2, 30), np.arange(2))
    sampler.sink.flush()
    # The disk fills up under the open file: from now on every write gets ENOSPC.
    record_fd = sampler.sink._file._fd  # type: ignore[union-attr]
    saved = os.dup(record_fd)
    full = os.open(DEV_FULL, os.O_WRONLY)
    os.dup2(full, record_fd)
    os.close(full)
    with caplog.at_level(logging.WARNING, logger="qr_sampler"):
        for _ in range(5):
            forced(sampler.sample(torch.randn(2, 30), np.arange(2)))
        sampler.sink.flush()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per interval, not once per step
    assert "QR_LOG_PATH=" in errors[0].getMessage()
    assert "No space left on device" in errors[0].getMessage()
    assert sampler.sink.lost_records == 10

    sampler.sink.error_interval_s = 0.0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qr_sampler"):
        sampler.sample(torch.randn(2, 30), np.arange(2))
        sampler.sink.flush()
    # the eight records lost after the first report, and these two
    assert "10 record(s) lost since the last report, 12 in all" in caplog.text

    os.dup2(saved, record_fd)  # space again
    os.close(saved)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qr_sampler"):
        sampler.sample(torch.randn(2, 30), np.arange(2))
        sampler.sink.flush()
    assert "again; 12 record(s) lost in all" in caplog.text
    sampler.close()
    steps = [strict_json(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [1, 1, 8, 8]


# Runs in a process whose files may not grow past a limit, as on a disk that fills up:
# the write that crosses it is cut short, then refused.
FILE_SIZE_LIMITED = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from qr_sampler.settings.config import QRSamplerConfig
    from qr_sampler.sampling.sampler import QRSampler

    config = QRSamplerConfig.load(env_file="/dev/null", log_path=sys.argv[1])
    sampler = QRSampler(config=config)
    for slot in range(3):
        sampler.table.put(slot, sampler.defaults)
    steps = 0
    while sampler.sink.lost_records < 9:
        logits = sampler.sample(torch.randn(3, 40), np.arange(3))
        assert ((logits == 0).sum(dim=1) == 1).all()
        steps += 1
    sampler.close()
    print(json.dumps({"steps": steps, "lost": sampler.sink.lost_records}))
    """
)


def test_a_write_cut_short_leaves_no_half_record(tmp_path: Path) -> None:
    log = tmp_path / "tokens.jsonl"
    limit = 4000  # bytes: about ten steps of three records

    def limit_file_size() -> None:  # pragma: no cover - runs in the child
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMITED, str(log)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
        env={**os.environ, "QR_ENV_FILE": os.devnull},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "could not write token records to QR_LOG_PATH=" in done.stderr
    text = log.read_text()
    assert text.endswith("\n")
    records = [strict_json(line) for line in text.splitlines()]
    assert len(records) == 3 * result["steps"] - result["lost"]
    assert [r["row"] for r in records] == [0, 1, 2] * (len(records) // 3)
    assert len(text.encode()) <= limit


def test_records_are_strict_json_with_null_for_non_finite_values(tmp_path: Path) -> None:
    sampler, _ = make_sampler(tmp_path)
    sampler.table.put(0, sampler.resolve({"qr_diagnostic_mode": True}))
    sampler.sample(torch.randn(1, 30), np.arange(1))
    (record,) = sampler.sink.recent()
    odd = dataclasses.replace(
        record, u=math.nan, z_score=-math.inf, token_prob=math.inf, shannon_entropy=None
    )
    values = strict_json(odd.to_json())
    assert values["u"] is None
    assert values["z_score"] is None
    assert values["token_prob"] is None
    assert values["shannon_entropy"] is None
    assert values["sample_mean"] == record.sample_mean
    assert strict_json(record.to_json()) == dataclasses.asdict(record)


def test_a_step_whose_records_cannot_be_built_is_counted_and_the_next_one_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sampler, log = two_recorded_rows(tmp_path)

    def unreadable() -> list[TokenRecord | None]:
        raise RuntimeError("the device lost the copy")

    with caplog.at_level(logging.ERROR, logger="qr_sampler"):
        sampler.sink.write_step(StepRecords([0, 1], [0, 0], [None, None], unreadable))
        sampler.sample(torch.randn(2, 30), np.arange(2))  # neither raises
        sampler.sink.flush()
    assert "could not build or write a step's token records" in caplog.text
    assert sampler.sink.lost_records == 2
    assert [json.loads(line)["row"] for line in log.read_text().splitlines()] == [0, 1]
