"""The committed protoc output for entropy_service.proto must match a fresh grpcio-tools run."""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
from pathlib import Path

import pytest

from qr_urandom_server.proto import regen

grpc_tools_missing = regen.installed_grpcio_tools_version() is None
needs_grpc_tools = pytest.mark.skipif(
    grpc_tools_missing,
    reason=f"the stale-stub check needs grpcio-tools=={regen.GRPCIO_TOOLS_VERSION}",
)


@needs_grpc_tools
def test_committed_stubs_are_current() -> None:
    stale = regen.stale_files()
    assert stale == [], (
        f"generated stubs are stale: {stale}; run "
        "'python -m qr_urandom_server.proto.regen' and commit the result"
    )


@needs_grpc_tools
def test_check_detects_an_edited_stub(tmp_path: Path) -> None:
    shutil.copytree(regen.PROTO_ROOT / "qr_entropy", tmp_path / "qr_entropy")
    assert regen.main(["--check", "--out", str(tmp_path)]) == 0
    edited = tmp_path / regen.GENERATED_FILES[0]
    edited.write_text(edited.read_text(encoding="utf-8") + "# hand edit\n", encoding="utf-8")
    (tmp_path / regen.GENERATED_FILES[2]).unlink()
    assert regen.stale_files(tmp_path) == [regen.GENERATED_FILES[0], regen.GENERATED_FILES[2]]
    assert regen.main(["--check", "--out", str(tmp_path)]) == 1


@needs_grpc_tools
def test_regen_writes_identical_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert regen.main(["--out", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    for rel in regen.GENERATED_FILES:
        committed = (regen.PROTO_ROOT / rel).read_text(encoding="utf-8")
        assert (tmp_path / rel).read_text(encoding="utf-8") == committed


@needs_grpc_tools
def test_version_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(regen, "GRPCIO_TOOLS_VERSION", "0.0.1")
    with pytest.raises(regen.RegenError, match=r"pinned to 0\.0\.1"):
        regen.render()
    assert regen.main(["--check", "--out", str(tmp_path)]) == 2
    # Deliberately moving the pin is possible.
    assert set(regen.render(allow_version_mismatch=True)) == set(regen.GENERATED_FILES)


def test_installed_version_lookup_handles_missing_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_found(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(regen.importlib.metadata, "version", not_found)
    assert regen.installed_grpcio_tools_version() is None


def test_missing_grpc_tools_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regen, "installed_grpcio_tools_version", lambda: None)
    with pytest.raises(regen.RegenError, match="grpcio-tools is not installed"):
        regen.render()


@needs_grpc_tools
def test_protoc_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regen, "PROTO_FILE", "qr_entropy/v1/does_not_exist.proto")
    with pytest.raises(regen.RegenError, match="protoc failed"):
        regen.render()


def test_generated_service_stub_imports_inside_the_package() -> None:
    module = importlib.import_module(
        "qr_urandom_server.proto.qr_entropy.v1.entropy_service_pb2_grpc"
    )
    text = Path(module.__file__ or "").read_text(encoding="utf-8")
    assert "from qr_entropy.v1 import" not in text
    assert "from . import entropy_service_pb2" in text
    assert hasattr(module, "EntropyServiceStub")
    assert hasattr(module, "add_EntropyServiceServicer_to_server")
    messages = importlib.import_module("qr_urandom_server.proto.qr_entropy.v1.entropy_service_pb2")
    assert messages.EntropyRequest.__module__ == messages.__name__


def test_proto_file_ships_with_the_package() -> None:
    proto = regen.PROTO_ROOT / regen.PROTO_FILE
    text = proto.read_text(encoding="utf-8")
    assert "package qr_entropy;" in text
    assert "rpc GetEntropy(EntropyRequest) returns (EntropyResponse);" in text
    assert "rpc StreamEntropy(stream EntropyRequest) returns (stream EntropyResponse);" in text
