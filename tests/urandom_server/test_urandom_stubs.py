"""The committed protoc output for entropy_service.proto must match a fresh grpcio-tools run.

These tests also cover the repository's generator (tools/regen_protos.py and the
tools/proto_stubs package behind it) as a whole: its version pin, its CLI and its error
paths are the same for every package, so they are tested once, here.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.resources
import shutil
import sys
from pathlib import Path

import pytest

# The generator is a development tool of the repository, not part of any package (it needs
# grpcio-tools, which no package needs at run time), so it is loaded from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import regen_protos
from proto_stubs import catalog, generate, on_disk, toolchain

PACKAGE = catalog.PACKAGES["qr-source-urandom-server"]

needs_grpc_tools = pytest.mark.skipif(
    toolchain.installed_grpcio_tools_version() is None,
    reason=f"the stale-stub check needs grpcio-tools=={toolchain.GRPCIO_TOOLS_VERSION}",
)


@needs_grpc_tools
def test_committed_stubs_are_current() -> None:
    stale = on_disk.stale_files([PACKAGE])
    assert stale == [], (
        f"generated stubs are stale: {stale}; run "
        "'python tools/regen_protos.py qr-source-urandom-server' and commit the result"
    )


@needs_grpc_tools
def test_check_detects_an_edited_and_a_missing_stub(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(
        catalog.REPO_ROOT / PACKAGE.include_dir / "qr_entropy",
        tmp_path / PACKAGE.include_dir / "qr_entropy",
    )
    argv = ["--check", "--out", str(tmp_path), PACKAGE.name]
    assert regen_protos.main(argv) == 0
    keys = PACKAGE.outputs()
    edited = tmp_path / keys[0]
    edited.write_text(edited.read_text(encoding="utf-8") + "# hand edit\n", encoding="utf-8")
    (tmp_path / keys[2]).unlink()
    assert on_disk.stale_files([PACKAGE], tmp_path) == [keys[0], keys[2]]
    capsys.readouterr()
    assert regen_protos.main(argv) == 1
    err = capsys.readouterr().err
    assert f"stale: {edited}" in err
    assert "regenerate with: python tools/regen_protos.py qr-source-urandom-server" in err


@needs_grpc_tools
def test_regen_writes_identical_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert regen_protos.main(["--out", str(tmp_path), PACKAGE.name]) == 0
    assert "wrote" in capsys.readouterr().out
    for key in PACKAGE.outputs():
        committed = (catalog.REPO_ROOT / key).read_text(encoding="utf-8")
        assert (tmp_path / key).read_text(encoding="utf-8") == committed


@needs_grpc_tools
def test_version_mismatch_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(toolchain, "GRPCIO_TOOLS_VERSION", "0.0.1")
    with pytest.raises(toolchain.RegenError, match=r"pinned to 0\.0\.1"):
        generate.render(PACKAGE)
    assert regen_protos.main(["--check"]) == 2
    assert "pip install 'grpcio-tools==0.0.1'" in capsys.readouterr().err
    # Deliberately moving the pin is possible.
    fresh = generate.render(PACKAGE, allow_version_mismatch=True)
    assert set(fresh) == set(PACKAGE.outputs())
    assert regen_protos.main(["--check", "--allow-version-mismatch", PACKAGE.name]) == 0


def test_installed_version_lookup_handles_missing_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_found(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(toolchain.importlib.metadata, "version", not_found)
    assert toolchain.installed_grpcio_tools_version() is None


def test_missing_grpc_tools_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(toolchain, "installed_grpcio_tools_version", lambda: None)
    with pytest.raises(toolchain.RegenError, match="grpcio-tools is not installed"):
        generate.render(PACKAGE)
    assert regen_protos.main([PACKAGE.name]) == 2
    assert "grpcio-tools is not installed" in capsys.readouterr().err


@needs_grpc_tools
def test_protoc_failure_is_reported() -> None:
    absent = dataclasses.replace(PACKAGE, proto="qr_entropy/v1/does_not_exist.proto")
    with pytest.raises(toolchain.RegenError, match="protoc failed"):
        generate.render(absent)


def test_unknown_package_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        regen_protos.main(["--check", "qr-source-nope"])
    assert exit_info.value.code == 2
    assert "unknown package qr-source-nope" in capsys.readouterr().err


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
    shipped = importlib.resources.files("qr_urandom_server.proto").joinpath(
        *PACKAGE.proto.split("/")
    )
    text = shipped.read_text(encoding="utf-8")
    assert "package qr_entropy;" in text
    assert "rpc GetEntropy(EntropyRequest) returns (EntropyResponse);" in text
    assert "rpc StreamEntropy(stream EntropyRequest) returns (stream EntropyResponse);" in text
    # ...and it is the proto the generator compiles.
    checkout = catalog.REPO_ROOT / PACKAGE.include_dir / PACKAGE.proto
    assert checkout.read_text(encoding="utf-8") == text
