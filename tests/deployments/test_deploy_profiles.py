"""Shipped profiles pass ``qr-sampler profile check``; broken copies fail for the right reason."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_support import (
    DEPLOYMENTS,
    PLACEHOLDER_KEYS,
    container_variables,
    copy_profile,
    set_line,
)

from qr_sampler.cli.main import main
from qr_sampler.plugins.known_variables import read_env_file

REAL_KEY = "f1r3fly-9c2e7a41b0d85f36"
EXAMPLE_LINE = re.compile(r"^# (QR_[A-Z0-9_]+)=(.*)$", re.M)


def check(capsys: pytest.CaptureFixture[str], profile: str, where: Path) -> tuple[int, str, str]:
    code = main(["profile", "check", profile, "--deployments", str(where)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["urandom", "_template", "lfd", "quantis-appliance", "truerng"])
def test_every_shipped_profile_passes(capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert check(capsys, name, DEPLOYMENTS) == (0, f"{name}: ok\n", "")


@pytest.mark.parametrize(("name", "variable"), sorted(PLACEHOLDER_KEYS.items()))
def test_a_profile_with_a_key_passes_with_a_reminder_to_give_it(
    capsys: pytest.CaptureFixture[str], name: str, variable: str
) -> None:
    code, out, err = check(capsys, name, DEPLOYMENTS)
    assert (code, out) == (0, f"{name}: ok, 1 warning(s)\n")
    assert f"warning: {variable} in " in err
    assert "is the placeholder '<your-api-" in err
    assert "give the real key at run time" in err


def test_list_shows_the_shipped_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "list", "--deployments", str(DEPLOYMENTS)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    http = ["packages/qr-source-http", "http"]
    assert rows == [
        ["anu", *http],
        ["firefly-1", "packages/qr-source-grpc", "quantum_grpc"],
        ["lfd", *http],
        ["outshift", *http],
        ["qrypt", *http],
        ["quantis-appliance", *http],
        ["truerng", "packages/qr-source-device", "device"],
        ["urandom", "packages/qr-source-grpc", "quantum_grpc"],
    ]


def test_the_shipped_profiles_hold_what_the_spec_says() -> None:
    firefly = read_env_file(str(DEPLOYMENTS / "firefly-1" / ".env"))
    assert firefly["QR_GRPC_SERVER_ADDRESS"] == "10.0.0.115:50051"
    assert firefly["QR_GRPC_METHOD_PATH"] == "/qrng.QuantumRNG/GetRandomBytes"
    assert firefly["QR_GRPC_STREAM_METHOD_PATH"] == ""
    assert firefly["QR_GRPC_MODE"] == "unary"
    assert firefly["QR_GRPC_API_KEY_HEADER"] == "api-key"
    assert firefly["QR_GRPC_API_KEY"] == "<your-api-key>"
    urandom = read_env_file(str(DEPLOYMENTS / "urandom" / ".env"))
    assert urandom["QR_ENTROPY_SOURCE_TYPE"] == "quantum_grpc"
    assert urandom["QR_GRPC_SERVER_ADDRESS"] == "entropy-server:50051"


def test_the_template_shows_every_setting_with_a_valid_example(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    template = copy_profile("_template", tmp_path)
    text = (template / ".env").read_text("utf-8")
    named = {*read_env_file(str(template / ".env")), *dict(EXAMPLE_LINE.findall(text))}
    assert {name for name in named if name.startswith("QR_")} == container_variables()
    # Every example at once, uncommented, is still a valid profile.
    (template / ".env").write_text(EXAMPLE_LINE.sub(r"\1=\2", text), encoding="utf-8")
    code, out, err = check(capsys, "_template", tmp_path / "deployments")
    # The example keys are placeholders: valid, with the reminder to give the real ones.
    assert (code, out) == (0, "_template: ok, 2 warning(s)\n")
    assert "QR_GRPC_API_KEY in " in err
    assert "QR_HTTP_API_KEY in " in err
    assert "error" not in err


def test_a_new_profile_from_the_real_template_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    copy_profile("_template", tmp_path)
    where = str(tmp_path / "deployments")
    assert main(["profile", "new", "my-lab", "--deployments", where]) == 0
    capsys.readouterr()
    assert check(capsys, "my-lab", tmp_path / "deployments")[0] == 0
    assert "PROFILE=my-lab\n" in (tmp_path / "deployments" / "my-lab" / ".env").read_text("utf-8")


def test_a_typo_fails_with_did_you_mean(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    env_file = copy_profile("firefly-1", tmp_path) / ".env"
    env_file.write_text(
        env_file.read_text("utf-8").replace("QR_GRPC_METHOD_PATH=", "QR_GRPC_METHOD_PAHT="),
        encoding="utf-8",
    )
    code, out, err = check(capsys, "firefly-1", tmp_path / "deployments")
    assert code == 1
    assert (
        f"error: unknown variable QR_GRPC_METHOD_PAHT ({env_file}); "
        "did you mean QR_GRPC_METHOD_PATH?" in err
    )
    assert out == "firefly-1: 1 error(s), 1 warning(s)\n"  # the warning: its placeholder key


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "QR_GRPC_SERVER_ADDRESS",
            "10.0.0.115",
            "QR_GRPC_SERVER_ADDRESS: Value error, '10.0.0.115' is not host:port",
        ),
        (
            "QR_GRPC_MODE",
            "bidi_streaming",
            "QR_GRPC_MODE=bidi_streaming needs QR_GRPC_STREAM_METHOD_PATH",
        ),
        (
            "QR_GRPC_METHOD_PATH",
            "qrng.QuantumRNG.GetRandomBytes",
            "must look like /package.Service/Method",
        ),
        ("QR_GRPC_API_KEY_HEADER", "API-Key", "must be a lowercase gRPC metadata key"),
        ("QR_SAMPLE_COUNT", "0", "QR_SAMPLE_COUNT: Input should be greater than or equal to 1"),
        ("QR_FALLBACK_MODE", "retry", "QR_FALLBACK_MODE: Input should be 'system' or 'error'"),
    ],
)
def test_a_bad_value_fails_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, value: str, message: str
) -> None:
    set_line(copy_profile("firefly-1", tmp_path) / ".env", name, value)
    code, _, err = check(capsys, "firefly-1", tmp_path / "deployments")
    assert code == 1
    assert message in err


def test_a_source_missing_from_sources_txt_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    profile = copy_profile("urandom", tmp_path)
    (profile / "sources.txt").write_text("# emptied\n", encoding="utf-8")
    code, _, err = check(capsys, "urandom", tmp_path / "deployments")
    assert code == 1
    assert (
        f"error: QR_ENTROPY_SOURCE_TYPE=quantum_grpc: no package in {profile / 'sources.txt'} "
        "provides this source, so the image would not have it; add qr-source-grpc" in err
    )


def test_the_source_may_be_named_by_distribution(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    profile = copy_profile("urandom", tmp_path)
    (profile / "sources.txt").write_text("qr-source-grpc==0.1.0\n", encoding="utf-8")
    assert check(capsys, "urandom", tmp_path / "deployments")[0] == 0


def test_a_real_key_in_a_git_tracked_file_is_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env_file = copy_profile("firefly-1", tmp_path) / ".env"
    set_line(env_file, "QR_GRPC_API_KEY", REAL_KEY)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "deployments"], check=True)
    code, out, err = check(capsys, "firefly-1", tmp_path / "deployments")
    assert code == 0
    assert out == "firefly-1: ok, 1 warning(s)\n"
    assert (
        f"warning: QR_GRPC_API_KEY in {env_file} looks like a real key and the file is "
        "tracked by git" in err
    )
    assert REAL_KEY not in err

    (tmp_path / "deployments" / ".gitignore").write_text("firefly-1/\n", encoding="utf-8")
    subprocess.run(["git", "-C", str(tmp_path), "rm", "-rq", "--cached", "deployments"], check=True)
    assert check(capsys, "firefly-1", tmp_path / "deployments") == (0, "firefly-1: ok\n", "")
