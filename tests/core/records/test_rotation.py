"""Rotation (QR_LOG_ROTATE_MB): a real sampler goes on in a new records file part, and
bytes archive part, once its records file passes the limit; ``qr-sampler verify``
checks each part's chain and its link to the part before, and names a part that is
missing, out of order or cut."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from chain_support import ROWS, lines, rewrite, sampled_run

from qr_sampler.cli.main import main
from qr_sampler.records.chain import HEADS_SUFFIX, MANIFEST_SUFFIX, line_sha256
from qr_sampler.records.engine_files import engine_path
from qr_sampler.records.parts import part_path

#: 10,000 bytes: a step of ROWS records is about 3,300, so a part holds four steps.
LIMIT_MB = "0.01"
LIMIT = 10_000
STEPS = 12


def parts(log: Path) -> list[Path]:
    found = [log]
    while Path(part_path(str(log), len(found))).exists():
        found.append(Path(part_path(str(log), len(found))))
    return found


def verify(files: list[Path], *extra: str) -> int:
    archives = [str(path.with_suffix(".bin")) for path in files]
    return main(["verify", *map(str, files), "--bytes", *archives, *extra])


def manifests(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines(Path(str(path) + MANIFEST_SUFFIX))]


@pytest.fixture
def rotated(tmp_path: Path) -> list[Path]:
    log = tmp_path / "tokens.jsonl"
    sampled_run(tmp_path, log, STEPS, settle=True, log_rotate_mb=LIMIT_MB)
    return parts(log)


def first_problem(files: list[Path], capsys: pytest.CaptureFixture[str]) -> str:
    assert verify(files) == 1
    return capsys.readouterr().out.splitlines()[0]


def test_parts_are_named_after_the_records_file_and_its_engine() -> None:
    assert part_path("/d/tokens.jsonl", 0) == "/d/tokens.jsonl"
    assert part_path("/d/tokens.jsonl", 1) == "/d/tokens.part0001.jsonl"
    assert part_path(engine_path("/d/tokens.jsonl", 2), 12) == "/d/tokens.dp2.part0012.jsonl"
    assert part_path("", 3) == ""


def test_an_honest_rotated_run_verifies(tmp_path, capsys):
    # Not settled: the engine hands steps over while the records thread writes.
    log = tmp_path / "tokens.jsonl"
    sampled_run(tmp_path, log, STEPS, log_rotate_mb=LIMIT_MB)
    files = parts(log)
    assert len(files) >= 2
    assert all(path.with_suffix(".bin").exists() for path in files)
    assert verify(files) == 0
    out = capsys.readouterr().out
    assert f"chain: {ROWS * STEPS} record(s) linked in 1 run(s)" in out
    assert f"{len(files) - 1} part(s) continuing a rotated run" in out
    # Each part's offsets count from its own archive part's start.
    assert [json.loads(lines(path)[0])["bytes_offset"] for path in files[1:]] == [0] * (
        len(files) - 1
    )


def test_records_held_by_the_engine_go_to_the_part_their_bytes_went_to(tmp_path, capsys):
    log = tmp_path / "tokens.jsonl"
    sampled_run(tmp_path, log, STEPS, held=True, log_rotate_mb=LIMIT_MB)
    files = parts(log)
    assert len(files) >= 2
    for path in files:
        assert len(lines(path)) % ROWS == 0
    assert verify(files) == 0, capsys.readouterr().out


def test_rotation_happens_at_the_limit_and_only_between_steps(rotated):
    assert len(rotated) == 3
    steps_seen: list[set[int]] = []
    for path in rotated:
        records = [json.loads(line) for line in lines(path)]
        steps = [record["step"] for record in records]
        assert len(steps) % ROWS == 0
        steps_seen.append(set(steps))
    # No step's records are in two files, and none is lost.
    assert sum(len(steps) for steps in steps_seen) == STEPS
    assert set().union(*steps_seen) == set(range(1, STEPS + 1))
    for path in rotated[:-1]:
        text = lines(path)
        assert path.stat().st_size >= LIMIT
        # The part ended with the step that took it past the limit.
        assert len("".join(text[:-ROWS]).encode()) < LIMIT


def test_a_part_that_cannot_be_started_loses_its_steps_and_nothing_else(tmp_path, capsys):
    log = tmp_path / "tokens.jsonl"
    # The new part's manifest cannot be written: a directory stands in its place.
    Path(part_path(str(log), 1) + MANIFEST_SUFFIX).mkdir()
    sampler = sampled_run(tmp_path, log, STEPS, settle=True, log_rotate_mb=LIMIT_MB)
    written = len(lines(log))
    assert written < ROWS * STEPS
    assert sampler.sink.lost_records == ROWS * STEPS - written
    assert main(["verify", str(log), "--bytes", str(log.with_suffix(".bin"))]) == 0
    assert f"checked {written} record(s)" in capsys.readouterr().out


def test_a_new_part_names_the_old_files_last_hash(rotated):
    first = manifests(rotated[0])[0]
    assert first["previous_head"] is None
    assert first["previous_file"] is None
    for before, path in itertools.pairwise(rotated):
        (manifest,) = manifests(path)
        assert manifest["previous_head"] == line_sha256(lines(before)[-1].rstrip("\n"))
        assert manifest["previous_file"] == before.name
        assert manifest["records_file"] == path.name
        assert manifest["started"] == first["started"]
        assert manifest["settings"] == first["settings"]
        manifest_line = lines(Path(str(path) + MANIFEST_SUFFIX))[0].rstrip("\n")
        assert json.loads(lines(path)[0])["prev_sha256"] == line_sha256(manifest_line)
        # The old file's chain ends with a head of all its records.
        last_head = json.loads(lines(Path(str(before) + HEADS_SUFFIX))[-1])
        assert last_head["records"] == len(lines(before))


def test_a_missing_part_is_named(rotated, capsys):
    line = first_problem([rotated[0], rotated[2]], capsys)
    assert line.startswith(f"{rotated[2]}: manifest line 1: this part continues")
    assert "(tokens.part0001.jsonl is missing)" in line


def test_parts_out_of_order_are_named(rotated, capsys):
    line = first_problem([rotated[0], rotated[2], rotated[1]], capsys)
    assert line.startswith(f"{rotated[2]}: manifest line 1:")
    assert "comes after it: the parts are out of order" in line


def test_a_part_whose_last_line_was_cut_is_named(rotated, capsys):
    rewrite(rotated[1], lines(rotated[1])[:-1])
    assert verify(rotated) == 1
    out = capsys.readouterr().out
    named = str(manifests(rotated[2])[0]["previous_head"])[:16]
    assert f"{rotated[2]}: manifest line 1: previous_head {named}... is not the hash" in out
    assert "records were cut from the end of tokens.part0001.jsonl" in out
    # The cut part's own last head says so too.
    assert f"{rotated[1]}: heads line" in out


def test_a_request_spans_its_engines_parts_but_not_two_engines(rotated, capsys):
    ids = [{json.loads(line)["request_id"] for line in lines(path)} for path in rotated]
    assert ids[0] == ids[1] == ids[2]
    assert verify(rotated) == 0
    other = rotated[0].with_name("other.jsonl")
    other.write_text(rotated[1].read_text())
    other.with_suffix(".bin").write_bytes(rotated[1].with_suffix(".bin").read_bytes())
    assert verify([*rotated, other]) == 1
    assert "files of different engines" in capsys.readouterr().out


def test_a_server_started_again_goes_on_in_the_last_part(rotated, tmp_path, capsys):
    last = lines(rotated[-1])[-1].rstrip("\n")
    sampled_run(tmp_path, rotated[0], 1, log_rotate_mb=LIMIT_MB)
    assert parts(rotated[0]) == rotated
    restart = manifests(rotated[-1])[-1]
    assert restart["previous_head"] == line_sha256(last)
    assert restart["previous_file"] is None
    assert verify(rotated) == 0
    assert "linked in 2 run(s)" in capsys.readouterr().out


def test_each_data_parallel_engine_rotates_its_own_file(tmp_path, capsys):
    log = tmp_path / "tokens.jsonl"
    sampled_run(tmp_path, log, STEPS, log_rotate_mb=LIMIT_MB)
    sampled_run(tmp_path, log, STEPS, log_rotate_mb=LIMIT_MB, dp_rank="1")
    second = parts(Path(engine_path(str(log), 1)))
    assert second[1].name == "tokens.dp1.part0001.jsonl"
    assert verify([*parts(log), *second]) == 0, capsys.readouterr().out


def test_rotated_manifests_are_signed_and_verify_with_the_public_key(tmp_path, capsys):
    assert main(["keys", "new", str(tmp_path / "run")]) == 0
    log = tmp_path / "signed.jsonl"
    sampled_run(
        tmp_path,
        log,
        STEPS,
        settle=True,
        log_rotate_mb=LIMIT_MB,
        signing_key=str(tmp_path / "run.key"),
    )
    files = parts(log)
    assert len(files) == 3
    capsys.readouterr()
    assert verify(files, "--public-key", str(tmp_path / "run.pub")) == 0
    entries = sum(
        len(lines(Path(str(path) + suffix)))
        for path in files
        for suffix in (MANIFEST_SUFFIX, HEADS_SUFFIX)
    )
    assert f"{entries} signature(s) checked" in capsys.readouterr().out
    for path in files[1:]:
        assert isinstance(manifests(path)[0]["signature"], str)
    assert main(["keys", "new", str(tmp_path / "other")]) == 0
    capsys.readouterr()
    assert verify(files, "--public-key", str(tmp_path / "other.pub")) == 1
    assert f"{files[1]}: manifest line 1: signature" in capsys.readouterr().out


def test_analyze_checks_the_links_between_parts(rotated, tmp_path):
    out = tmp_path / "report"
    assert main(["analyze", *map(str, rotated), "--out", str(out)]) == 0
    integrity = json.loads((out / "summary.json").read_text())["provenance"]["integrity"]
    assert integrity.startswith(f"hash chain holds: {ROWS * STEPS} record(s) linked")
    assert main(["analyze", str(rotated[0]), str(rotated[2]), "--out", str(out)]) == 0
    integrity = json.loads((out / "summary.json").read_text())["provenance"]["integrity"]
    assert integrity.startswith(f"broken: {rotated[2]}: manifest line 1: this part continues")
