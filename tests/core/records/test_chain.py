"""The records' hash chain, the run manifest, chain heads and signing: a real sampler
writes real files, they are tampered with as a forger would, and ``qr-sampler
verify`` must name the first broken link."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from chain_support import ROWS, STEPS, lines, rewrite, sampled_run

from qr_sampler.cli.main import main
from qr_sampler.errors import ConfigValidationError
from qr_sampler.records.chain import HEADS_SUFFIX, MANIFEST_SUFFIX, entry_line, line_sha256
from qr_sampler.records.chain_check import check_chain
from qr_sampler.records.engine_files import engine_path
from qr_sampler.records.signing import Signer, load_public_key
from qr_sampler.sampling.sampler import QRSampler
from qr_sampler.settings.config import QRSamplerConfig


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.jsonl"
    sampled_run(tmp_path, path)
    return path


def verify(log: Path, *extra: str) -> int:
    return main(["verify", str(log), "--bytes", str(log.with_suffix(".bin")), *extra])


def first_problem(log: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert verify(log, *extra) == 1
    return capsys.readouterr().out.splitlines()[0]


def test_an_honest_run_passes_and_its_chain_links_every_record(log, capsys):
    assert verify(log) == 0
    out = capsys.readouterr().out
    assert f"chain: {ROWS * STEPS} record(s) linked in 1 run(s)" in out
    records = [json.loads(line) for line in lines(log)]
    manifest = Path(str(log) + MANIFEST_SUFFIX).read_text().splitlines()
    assert records[0]["prev_sha256"] == line_sha256(manifest[0])
    for before, record in zip(lines(log), records[1:], strict=False):
        assert record["prev_sha256"] == line_sha256(before.rstrip("\n"))


def test_one_record_deleted_is_named(log, capsys):
    text = lines(log)
    del text[4]
    rewrite(log, text)
    line = first_problem(log, capsys)
    assert line.startswith("records line 5:")
    assert "record before this one removed" in line


def test_two_records_swapped_are_named(log, capsys):
    text = lines(log)
    text[3], text[4] = text[4], text[3]
    rewrite(log, text)
    line = first_problem(log, capsys)
    assert line.startswith("records line 4:")
    assert "found the hash of line 5: records were reordered" in line


@pytest.mark.parametrize(
    ("field", "value"),
    [("token_id", 199), ("u", 0.5), ("request_id", "forged"), ("fetch_ms", 1.0), ("arm", "x")],
)
def test_one_record_edited_in_any_field_is_named(log, capsys, field, value):
    text = lines(log)
    record = json.loads(text[6])
    record[field] = value
    text[6] = json.dumps(record, separators=(",", ":")) + "\n"
    rewrite(log, text)
    assert check_chain(str(log)).problems[0].where == "records line 8"
    assert first_problem(log, capsys)


def test_the_last_record_edited_is_named_by_the_head(log, capsys):
    text = lines(log)
    text[-1] = text[-1].replace('"fallback":false', '"fallback":true')
    rewrite(log, text)
    (problem,) = check_chain(str(log)).problems
    assert problem.where == f"heads line {STEPS}"
    assert "does not hash to this head" in problem.what
    assert verify(log) == 1


def test_an_edited_link_itself_is_named(log, capsys):
    text = lines(log)
    record = json.loads(text[2])
    record["prev_sha256"] = "0" * 64
    text[2] = json.dumps(record, separators=(",", ":")) + "\n"
    rewrite(log, text)
    assert first_problem(log, capsys).startswith("records line 3:")


def test_one_record_inserted_is_named(log, capsys):
    text = lines(log)
    text.insert(3, text[1])
    rewrite(log, text)
    line = first_problem(log, capsys)
    assert line.startswith("records line 4:")
    assert "found the hash of line 1" in line


def test_a_record_without_a_link_inserted_is_named(log, capsys):
    text = lines(log)
    record = json.loads(text[1])
    del record["prev_sha256"]
    text.insert(2, json.dumps(record) + "\n")
    rewrite(log, text)
    line = first_problem(log, capsys)
    assert line.startswith("records line 3:")
    assert "a line without one" in line


@pytest.mark.parametrize("cut", ["at a line's end", "inside a line"])
def test_the_file_truncated_in_the_middle_of_a_step_is_named(log, capsys, cut):
    text = lines(log)
    # The last step wrote ROWS lines; keep the first of them (and half of the second).
    kept = "".join(text[: -ROWS + 1])
    if cut == "inside a line":
        kept += text[-ROWS + 1][:40]
    log.write_text(kept)
    assert verify(log) == 1
    out = capsys.readouterr().out
    assert f"the run had {ROWS * STEPS} records when this head was written" in out
    assert "truncated file?" in out


def test_the_manifest_edited_is_named(log, capsys):
    manifest = Path(str(log) + MANIFEST_SUFFIX)
    entry = json.loads(manifest.read_text())
    entry["settings"]["QR_SAMPLE_COUNT"] = 1
    manifest.write_text(entry_line(entry) + "\n")
    assert verify(log) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("records line 1:")
    assert "the run's manifest" in out[0]
    assert any(line.startswith("manifest line 1: no record links to this run's") for line in out)


def test_a_second_run_appended_chains_on_to_the_first(tmp_path, log, capsys):
    last = lines(log)[-1].rstrip("\n")
    # A server that started and stopped before its first token, then a third run.
    QRSampler(
        QRSamplerConfig.load(env_file=str(tmp_path / "absent.env"), log_path=str(log))
    ).close()
    sampled_run(tmp_path, log)
    manifests = [json.loads(m) for m in Path(str(log) + MANIFEST_SUFFIX).read_text().splitlines()]
    assert [m["previous_head"] for m in manifests[1:]] == [line_sha256(last)] * 2
    assert verify(log) == 0
    assert f"{2 * ROWS * STEPS} record(s) linked in 2 run(s)" in capsys.readouterr().out


def test_records_from_before_chaining_pass_unchained(tmp_path, capsys):
    old = tmp_path / "old.jsonl"
    sampled_run(tmp_path, old)
    stripped = []
    for line in lines(old):
        record = json.loads(line)
        del record["prev_sha256"]
        stripped.append(json.dumps(record) + "\n")
    rewrite(old, stripped)
    os.remove(str(old) + MANIFEST_SUFFIX)
    os.remove(str(old) + HEADS_SUFFIX)
    assert verify(old) == 0
    assert f"{ROWS * STEPS} record(s) written before records were chained" in (
        capsys.readouterr().out
    )


def test_each_data_parallel_engine_keeps_a_chain_of_its_own(tmp_path, capsys):
    log = tmp_path / "tokens.jsonl"
    sampled_run(tmp_path, log)
    sampled_run(tmp_path, log, dp_rank="1")
    second = Path(engine_path(str(log), 1))
    assert Path(str(second) + MANIFEST_SUFFIX).exists()
    assert json.loads(Path(str(second) + MANIFEST_SUFFIX).read_text())["dp_rank"] == 1
    code = main(
        ["verify", str(log), str(second), "--bytes", str(log.with_suffix(".bin")),
         str(second.with_suffix(".bin"))]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().out
    # Records of one engine moved into the other's file break that file's chain.
    moved = lines(second)[0]
    rewrite(log, [*lines(log), moved])
    assert check_chain(str(log)).problems[0].where == f"records line {ROWS * STEPS + 1}"


def test_the_manifest_says_what_made_the_run_with_secrets_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("QR_GRPC_API_KEY", "a-real-key-0123456789")
    monkeypatch.setenv("QR_GRPC_API_KEY_HEADER", "x-api-key")
    monkeypatch.setenv("QR_ARMS", "a=system,b=prng")
    monkeypatch.setenv("QR_ARM_ASSIGNMENT", "random")
    log = tmp_path / "tokens.jsonl"
    sampled_run(tmp_path, log, steps=1)
    manifest = json.loads(Path(str(log) + MANIFEST_SUFFIX).read_text())
    assert manifest["kind"] == "qr-sampler run manifest"
    assert manifest["packages"]["qr-sampler-core"]
    assert manifest["settings"]["QR_GRPC_API_KEY"] == "****6789"
    assert manifest["settings"]["QR_GRPC_API_KEY_HEADER"] == "x-api-key"
    assert "a-real-key" not in Path(str(log) + MANIFEST_SUFFIX).read_text()
    assert manifest["settings"]["QR_ARMS"] == "a=system,b=prng"
    assert [(arm["name"], arm["source"]) for arm in manifest["arms"]] == [
        ("a", "system"),
        ("b", "prng"),
    ]
    assert manifest["arms"][1]["server"]["source"] == "prng"
    assert manifest["arm_assignment"] == "random"
    assert isinstance(manifest["arm_seed"], int)
    assert manifest["host"]
    assert manifest["started"]
    assert manifest["previous_head"] is None


# Signing ---------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path, capsys) -> tuple[Path, Path]:
    assert main(["keys", "new", str(tmp_path / "run")]) == 0
    assert "QR_SIGNING_KEY=" in capsys.readouterr().out
    private, public = tmp_path / "run.key", tmp_path / "run.pub"
    assert private.stat().st_mode & 0o777 == 0o600
    return private, public


@pytest.fixture
def signed(tmp_path: Path, keys) -> Path:
    path = tmp_path / "signed.jsonl"
    sampled_run(tmp_path, path, signing_key=str(keys[0]), chain_head_interval_s="0")
    return path


def test_a_signed_run_passes_with_its_public_key_alone(signed, keys, capsys):
    assert verify(signed, "--public-key", str(keys[1])) == 0
    out = capsys.readouterr().out
    heads = len(Path(str(signed) + HEADS_SUFFIX).read_text().splitlines())
    assert heads == STEPS
    assert f"{heads + 1} signature(s) checked" in out
    assert main(["verify", str(signed)]) == 0
    assert "give --public-key to check its signatures" in capsys.readouterr().out


def test_a_wrong_public_key_is_refused(signed, tmp_path, capsys):
    assert main(["keys", "new", str(tmp_path / "other")]) == 0
    capsys.readouterr()
    line = first_problem(signed, capsys, "--public-key", str(tmp_path / "other.pub"))
    assert line.startswith("manifest line 1: signature: expected one by the given public key")


def test_a_forged_chain_head_is_refused(signed, keys, tmp_path, capsys):
    # The forger cuts the last step and writes a head that covers what is left,
    # signed by a key of their own.
    text = lines(signed)[:-ROWS]
    rewrite(signed, text)
    heads = Path(str(signed) + HEADS_SUFFIX)
    real = [json.loads(line) for line in heads.read_text().splitlines()][: STEPS - 1]
    forged = dict(real[-1], time=real[-1]["time"] + 1)
    assert main(["keys", "new", str(tmp_path / "forger")]) == 0
    capsys.readouterr()
    Signer.from_file(str(tmp_path / "forger.key")).sign(forged)
    heads.write_text("".join(entry_line(head) + "\n" for head in [*real, forged]))
    assert check_chain(str(signed)).problems == []  # the chain alone cannot tell
    line = first_problem(signed, capsys, "--public-key", str(keys[1]))
    assert line.startswith(f"heads line {STEPS}: signature:")


def test_an_unsigned_run_is_refused_when_a_key_is_given(log, keys, capsys):
    line = first_problem(log, capsys, "--public-key", str(keys[1]))
    assert "manifest line 1: signature" in line


def test_keys_new_never_overwrites(keys, tmp_path, capsys):
    assert main(["keys", "new", str(tmp_path / "run")]) == 2
    assert "exists" in capsys.readouterr().err
    (tmp_path / "half.pub").write_text("")
    assert main(["keys", "new", str(tmp_path / "half")]) == 2
    assert not (tmp_path / "half.key").exists()


def test_a_bad_signing_key_stops_start_up(tmp_path, keys):
    with pytest.raises(ConfigValidationError, match="QR_SIGNING_KEY"):
        sampled_run(tmp_path, tmp_path / "x.jsonl", signing_key=str(tmp_path / "missing.key"))
    with pytest.raises(ConfigValidationError, match="not a PEM public key"):
        load_public_key(str(keys[0]))
    with pytest.raises(ConfigValidationError, match="Ed25519"):
        Signer.from_file(str(_rsa_key(tmp_path)))


def _rsa_key(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = tmp_path / "rsa.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_analyze_reports_the_chain_and_what_the_manifest_says(log, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["analyze", str(log), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())["provenance"]
    assert summary["integrity"] == f"hash chain holds: {ROWS * STEPS} record(s) linked " + (
        "(signatures: qr-sampler verify)"
    )
    assert summary["run"]["host"]
    assert summary["run"]["started_at"]
    assert summary["run"]["qr_sampler_version"]
    text = lines(log)
    del text[2]
    rewrite(log, text)
    assert main(["analyze", str(log), "--out", str(out)]) == 0
    integrity = json.loads((out / "summary.json").read_text())["provenance"]["integrity"]
    assert integrity.startswith(f"broken: {log}: records line 3:")


def test_the_manifest_masks_what_a_source_declares_secret(tmp_path, install_plugin, monkeypatch):
    install_plugin("vault", "secret")
    monkeypatch.setenv("QR_VAULT_PIN", "8642")
    monkeypatch.setenv("QR_VAULT_ADDRESS", "10.0.0.115:50051")
    log = tmp_path / "tokens.jsonl"
    sampled_run(tmp_path, log, steps=1)
    manifest = json.loads(Path(str(log) + MANIFEST_SUFFIX).read_text())
    assert manifest["settings"]["QR_VAULT_PIN"] == "****"
    assert manifest["settings"]["QR_VAULT_ADDRESS"] == "10.0.0.115:50051"
