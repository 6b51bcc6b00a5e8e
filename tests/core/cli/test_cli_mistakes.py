"""Configuration mistakes a newcomer makes, each caught before vLLM serves, naming the setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from qr_sampler.cli.main import main
from qr_sampler.errors import ConfigValidationError
from qr_sampler.settings.config import QRSamplerConfig

InstallPlugin = Callable[..., Path]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- QR_ENV_FILE ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_bad_env_file_is_an_error_everywhere_naming_the_path(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    kind: str,
) -> None:
    path = tmp_path / "deployments" / "firefly-1"
    if kind == "directory":
        path.mkdir(parents=True)
    else:
        path = path / ".env"
    monkeypatch.setenv("QR_ENV_FILE", str(path))
    expected = f"QR_ENV_FILE={path}"

    with pytest.raises(ConfigValidationError, match="QR_ENV_FILE=") as caught:
        QRSamplerConfig.load()  # what the plugin does when vLLM starts
    assert expected in str(caught.value)

    code, out, err = run_cli(capsys, "config")
    assert (code, out) == (1, "")
    assert expected in err

    code, out, err = run_cli(capsys, "probe", "--count", "1")
    assert (code, out) == (2, "")
    assert expected in err


def test_a_relative_env_file_says_where_it_was_looked_for(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QR_ENV_FILE", "deployments/firefly-1/.env")
    code, _, err = run_cli(capsys, "config")
    assert code == 1
    assert f"QR_ENV_FILE=deployments/firefly-1/.env: no such file (relative to {tmp_path})" in err


def test_env_file_option_naming_a_directory_is_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "config", "--env-file", str(tmp_path))
    assert code == 1
    assert f"--env-file={tmp_path} is a directory" in err


# --- names a plugin must have registered ------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "QR_ENTROPY_SOURCE_TYPE",
            "sytem",
            "QR_ENTROPY_SOURCE_TYPE='sytem' is not an installed entropy source; "
            "did you mean 'system'?",
        ),
        (
            "QR_ARMS",
            "qrng=sytem,control=prng",
            "QR_ARMS source='sytem' is not an installed entropy source; did you mean 'system'?",
        ),
        (
            "QR_SIGNAL_AMPLIFIER_TYPE",
            "foo",
            "QR_SIGNAL_AMPLIFIER_TYPE='foo' is not a registered amplifier "
            "(registered: uniform_bits, zscore_mean)",
        ),
        (
            "QR_TEMPERATURE_STRATEGY",
            "edtt",
            "QR_TEMPERATURE_STRATEGY='edtt' is not a registered temperature strategy; "
            "did you mean 'edt'?",
        ),
    ],
)
def test_config_refuses_names_nothing_registered(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    code, _, err = run_cli(capsys, "config")
    assert code == 1
    assert message in err


def test_load_plugins_is_named_when_it_hides_the_source(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    install_plugin: InstallPlugin,
) -> None:
    install_plugin("acme", "source", distribution="qr-source-acme")
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "acme")
    monkeypatch.setenv("QR_LOAD_PLUGINS", "acmee")
    code, _, err = run_cli(capsys, "probe", "--count", "1")
    assert code == 2
    assert "QR_LOAD_PLUGINS='acmee' leaves out the installed plugin(s) acme (qr-source-acme)" in err
    assert "did you mean 'acme'?" in err
    assert "install the package" not in err


# --- unknown QR_* names ---------------------------------------------------------------


def test_probe_refuses_a_misspelt_variable_like_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_TOP_KK", "3")
    code, out, err = run_cli(capsys, "probe", "--count", "1")
    assert (code, out) == (2, "")
    assert "unknown variable QR_TOP_KK (environment); did you mean QR_TOP_K?" in err
    code, _, err = run_cli(capsys, "config")
    assert code == 1
    assert "unknown variable QR_TOP_KK (environment); did you mean QR_TOP_K?" in err


# --- placeholder keys -----------------------------------------------------------------


def test_a_placeholder_key_is_refused_by_config(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    install_plugin: InstallPlugin,
) -> None:
    install_plugin("vault", "secret")
    monkeypatch.setenv("QR_VAULT_API_KEY", "<your-api-key>")
    code, _, err = run_cli(capsys, "config")
    assert code == 1
    assert "QR_VAULT_API_KEY is the placeholder '<your-api-key>', not a key" in err


# --- probe arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "argument --bytes: expected a whole number, got 'abc'"),
        ("0", "argument --bytes: must be between 1 and 67108864, got 0"),
        ("999999999", "argument --bytes: must be between 1 and 67108864, got 999999999"),
    ],
)
def test_probe_bytes_is_a_bounded_whole_number(
    capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["probe", "--bytes", value])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


# --- config output --------------------------------------------------------------------


def test_config_lists_process_settings_and_booleans_as_written(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_STRICT_PLUGINS", "1")
    monkeypatch.setenv("QR_DIAGNOSTIC_MODE", "true")
    code, out, err = run_cli(capsys, "config")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "[process]" in lines
    assert "QR_LOAD_PLUGINS=" in lines
    assert "QR_STRICT_PLUGINS=1" in lines
    assert "QR_DIAGNOSTIC_MODE=true" in lines
    assert "QR_BYPASS=false" in lines


def test_config_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader has gone, as `head` goes after its lines
    try:
        result = subprocess.run(
            [sys.executable, "-m", "qr_sampler.cli.main", "config"],
            stdout=write,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("QR_")},
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert result.returncode == 0


# --- source new -----------------------------------------------------------------------


def test_source_new_refuses_a_name_whose_distribution_is_installed(
    capsys: pytest.CaptureFixture[str], install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    install_plugin("other", "source", distribution="qr-source-taken")
    code, _, err = run_cli(capsys, "source", "new", "taken", "--dir", str(tmp_path))
    assert code == 2
    assert "the distribution qr-source-taken" in err
    assert "would replace it" in err
    assert not (tmp_path / "qr-source-taken").exists()


def test_source_new_refuses_a_name_whose_import_package_exists(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    (site / "qr_source_lonely").mkdir(parents=True)
    (site / "qr_source_lonely" / "__init__.py").write_text("", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    code, _, err = run_cli(capsys, "source", "new", "lonely", "--dir", str(tmp_path))
    assert code == 2
    assert "the import package qr_source_lonely" in err


def test_config_json_lists_the_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_TEMPERATURE_STRATEGY", "edtt")
    code, out, _ = run_cli(capsys, "config", "--json")
    assert code == 1
    (error,) = json.loads(out)["errors"]
    assert error.startswith("QR_TEMPERATURE_STRATEGY='edtt'")
