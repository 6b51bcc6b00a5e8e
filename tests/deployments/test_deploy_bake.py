"""docker/bake_profile.py, the build step that bakes a profile into the vLLM image.

Its pip step needs an index and the build's network, so it is exercised only with
profiles that install nothing; the settings it writes are checked for every profile.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import DEPLOYMENTS, SHIPPED_PROFILES, load_script

from qr_sampler.plugins.known_variables import read_env_file, secret_variables
from qr_sampler.plugins.registry import get_registry
from qr_sampler.profiles.catalog import Profile

bake = load_script("bake_profile")


@pytest.mark.parametrize("name", SHIPPED_PROFILES)
def test_baked_settings_are_the_profile_without_secrets(name: str, tmp_path: Path) -> None:
    profile = Profile(DEPLOYMENTS / name)
    baked = tmp_path / "profile.env"
    baked.write_text(bake.public_env(profile), encoding="utf-8")
    written = read_env_file(str(profile.env_file))
    secrets = secret_variables(get_registry())
    expected = {k: v for k, v in written.items() if k.startswith("QR_") and k not in secrets}
    assert read_env_file(str(baked)) == expected


def test_the_firefly_key_never_reaches_the_baked_file() -> None:
    text = bake.public_env(Profile(DEPLOYMENTS / "firefly-1"))
    assert "QR_GRPC_API_KEY=" not in text
    assert "<your-api-key>" not in text
    assert "QR_GRPC_API_KEY_HEADER='api-key'\n" in text
    assert "QR_GRPC_STREAM_METHOD_PATH=''\n" in text
    assert "PROFILE" not in text.replace(bake.HEADER, "")


def test_values_survive_the_round_trip_literally(tmp_path: Path) -> None:
    folder = tmp_path / "deployments" / "odd"
    folder.mkdir(parents=True)
    tricky = "it's a \\\\path\\\\ with ${HOME} and # not a comment"
    (folder / ".env").write_text(f'QR_TAG="{tricky}"\nQR_TOP_K=3\n', encoding="utf-8")
    written = read_env_file(str(folder / ".env"))
    baked = tmp_path / "profile.env"
    baked.write_text(bake.public_env(Profile(folder)), encoding="utf-8")
    assert read_env_file(str(baked)) == written


def test_without_a_profile_the_file_holds_only_its_header(tmp_path: Path) -> None:
    out = tmp_path / "etc" / "qr-sampler" / "profile.env"
    assert bake.main(["bake_profile.py", "", str(out)]) == 0
    assert out.read_text("utf-8") == bake.HEADER
    assert read_env_file(str(out)) == {}


def test_a_profile_is_checked_before_it_is_baked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "deployments" / "lab"
    folder.mkdir(parents=True)
    (folder / "sources.txt").write_text("# core only\n", encoding="utf-8")
    monkeypatch.setattr(bake, "REPO", tmp_path)
    out = tmp_path / "profile.env"

    (folder / ".env").write_text("PROFILE=lab\nQR_TOPK=5\n", encoding="utf-8")
    assert bake.main(["bake_profile.py", "lab", str(out)]) == 1
    assert "did you mean QR_TOP_K?" in capsys.readouterr().err
    assert not out.exists()

    (folder / ".env").write_text("PROFILE=lab\nQR_TOP_K=5\nHF_MODEL=org/m\n", encoding="utf-8")
    assert bake.main(["bake_profile.py", "lab", str(out)]) == 0
    assert read_env_file(str(out)) == {"QR_TOP_K": "5"}
