"""The ``qr-sampler`` command: in-process through ``main`` and once as the installed script."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qr_sampler.cli.main import main

InstallPlugin = Callable[..., Path]
CORE_VERSION = importlib.metadata.version("qr-sampler-core")
SECRET = "sk-live-7f3a9c0e2b4d6f81xyzw"

SHORT_REPLY_PLUGIN = """
from qr_sampler import EntropySource, hookimpl


class ShortSource(EntropySource):
    name = "short"

    def get_random_bytes(self, n):
        return bytes(n // 2)


@hookimpl
def register_entropy_sources(register):
    register("short", ShortSource)
"""


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def select_plugin(
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    *args: Any,
    **kwargs: Any,
) -> None:
    """Install a plugin source and make it the configured one."""
    install_plugin(name, *args, **kwargs)
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", name)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, _ = run_cli(capsys, *argv)
    return code, json.loads(out)


# --- sources --------------------------------------------------------------------------


def test_sources_table_lists_system_with_its_distribution(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "sources")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["SOURCE", "PLUGIN", "DISTRIBUTION", "VERSION"]
    assert ["system", "qr_sampler.builtins", "qr-sampler-core", CORE_VERSION] in [
        line.split() for line in lines
    ]
    assert "failed" not in out
    assert err == ""


def test_sources_json(capsys: pytest.CaptureFixture[str], install_plugin: InstallPlugin) -> None:
    install_plugin("acme", "source", distribution="qr-source-acme", version="2.5.0")
    code, report = run_json(capsys, "sources", "--json")
    assert code == 0
    assert report == {
        "sources": [
            {
                "name": "acme",
                "plugin": "acme",
                "distribution": "qr-source-acme",
                "version": "2.5.0",
            },
            {
                "name": "prng",
                "plugin": "qr_sampler.builtins",
                "distribution": "qr-sampler-core",
                "version": CORE_VERSION,
            },
            {
                "name": "replay",
                "plugin": "qr_sampler.builtins",
                "distribution": "qr-sampler-core",
                "version": CORE_VERSION,
            },
            {
                "name": "system",
                "plugin": "qr_sampler.builtins",
                "distribution": "qr-sampler-core",
                "version": CORE_VERSION,
            },
        ],
        "failed_plugins": [],
    }


def test_sources_lists_a_broken_plugin_and_succeeds(
    capsys: pytest.CaptureFixture[str], install_plugin: InstallPlugin
) -> None:
    install_plugin("broken", "broken", distribution="qr-source-broken", version="0.3.1")
    code, out, _ = run_cli(capsys, "sources")
    assert code == 0
    assert "failed to load" in out
    failure_line = next(line for line in out.splitlines() if "broken" in line)
    assert "qr-source-broken 0.3.1" in failure_line
    assert "libacme.so.3" in failure_line
    assert "system" in out

    code, report = run_json(capsys, "sources", "--json")
    assert code == 0
    (failure,) = report["failed_plugins"]
    assert failure["plugin"] == "broken"
    assert (failure["distribution"], failure["version"]) == ("qr-source-broken", "0.3.1")
    assert "ImportError" in failure["error"]
    assert [s["name"] for s in report["sources"]] == ["prng", "replay", "system"]


def test_strict_plugins_turns_a_broken_plugin_into_exit_2(
    capsys: pytest.CaptureFixture[str],
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_plugin("broken", "broken")
    monkeypatch.setenv("QR_STRICT_PLUGINS", "1")
    code, out, err = run_cli(capsys, "sources")
    assert code == 2
    assert out == ""
    assert err.startswith("error: ")
    assert "'broken'" in err


# --- config ---------------------------------------------------------------------------


def test_config_prints_the_effective_configuration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_TOP_K", "40")
    code, out, err = run_cli(capsys, "config")
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "# env file: .env (not found)"
    assert "[core]" in lines
    assert "QR_ENTROPY_SOURCE_TYPE=system" in lines
    assert "QR_FALLBACK_MODE=system" in lines
    assert "QR_TOP_K=40" in lines
    assert "QR_TOP_P=1.0" in lines


def test_config_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    profile = tmp_path / "firefly.env"
    profile.write_text("QR_FALLBACK_MODE=error\nQR_SAMPLE_COUNT=4096\n", encoding="utf-8")
    code, report = run_json(capsys, "config", "--env-file", str(profile), "--json")
    assert code == 0
    assert report["env_file"] == str(profile)
    assert report["errors"] == []
    core = report["settings"]["core"]
    assert core["QR_FALLBACK_MODE"] == "error"
    assert core["QR_SAMPLE_COUNT"] == 4096
    assert core["QR_TOP_K"] == 0


def test_config_reads_the_dot_env_of_the_working_directory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Path(".env").write_text("QR_TAG=from-dot-env\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "config")
    assert code == 0
    assert out.splitlines()[0] == "# env file: .env"
    assert "QR_TAG=from-dot-env" in out.splitlines()


def test_unknown_variable_in_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_TOPK", "50")
    code, _, err = run_cli(capsys, "config")
    assert code == 1
    assert "QR_TOPK" in err
    assert "environment" in err
    assert "did you mean QR_TOP_K" in err


def test_unknown_variable_in_the_env_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    profile = tmp_path / "profile.env"
    profile.write_text("QR_TOP_K=5\nQR_TOPK=50\nHF_TOKEN=x\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "config", "--env-file", str(profile))
    assert code == 1
    assert f"unknown variable QR_TOPK ({profile}); did you mean QR_TOP_K?" in err
    assert "HF_TOKEN" not in err  # not ours to judge


def test_process_variables_are_known(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QR_LOAD_PLUGINS", "")
    monkeypatch.setenv("QR_STRICT_PLUGINS", "0")
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    monkeypatch.setenv("QR_ENV_FILE", str(empty))
    code, out, err = run_cli(capsys, "config")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"# env file: {empty}"


def test_variables_of_an_uninstalled_source_are_unknown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_VAULT_ADDRESS", "10.0.0.1:1")
    code, _, err = run_cli(capsys, "config")
    assert code == 1
    assert "unknown variable QR_VAULT_ADDRESS" in err


def test_missing_env_file_is_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    code, out, err = run_cli(capsys, "config", "--env-file", str(missing))
    assert code == 1
    assert out == ""
    assert err.strip() == f"error: --env-file={missing}: no such file"


def test_bad_value_is_exit_1_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_TOP_P", "1.5")
    code, _, err = run_cli(capsys, "config")
    assert code == 1
    assert "error: core: QR_TOP_P" in err


def test_plugin_secret_is_masked_in_text_and_json(
    capsys: pytest.CaptureFixture[str],
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    install_plugin("vault", "secret")
    profile = tmp_path / "vault.env"
    profile.write_text(f"QR_VAULT_API_KEY={SECRET}\nQR_VAULT_PIN=8642\n", encoding="utf-8")
    monkeypatch.setenv("QR_VAULT_ADDRESS", "10.0.0.115:50051")

    code, out, err = run_cli(capsys, "config", "--env-file", str(profile))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "[vault]" in lines
    assert "QR_VAULT_ADDRESS=10.0.0.115:50051" in lines
    assert f"QR_VAULT_API_KEY=****{SECRET[-4:]}" in lines
    assert "QR_VAULT_PIN=****" in lines
    assert SECRET not in out
    assert "8642" not in out

    code, out, err = run_cli(capsys, "config", "--env-file", str(profile), "--json")
    assert code == 0
    vault = json.loads(out)["settings"]["vault"]
    assert vault["QR_VAULT_API_KEY"] == f"****{SECRET[-4:]}"
    assert SECRET not in out + err


def test_bad_secret_value_is_reported_without_the_secret(
    capsys: pytest.CaptureFixture[str],
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install_plugin("vault", "secret")
    monkeypatch.setenv("QR_VAULT_PIN", SECRET)
    code, out, err = run_cli(capsys, "config", "--json")
    assert code == 1
    assert "QR_VAULT_PIN" in err
    assert SECRET not in out + err
    assert any("QR_VAULT_PIN" in problem for problem in json.loads(out)["errors"])


# --- probe ----------------------------------------------------------------------------


def test_probe_json_reports_latency_throughput_and_health(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = run_json(capsys, "probe", "--bytes", "4096", "--count", "7", "--json")
    assert code == 0
    assert report["source"] == "system"
    assert (report["bytes_per_draw"], report["draws"]) == (4096, 7)
    assert 0 <= report["latency_ms_p50"] <= report["latency_ms_p99"]
    assert report["throughput_mb_s"] > 0
    assert report["health"] == {"source": "system", "healthy": True}


def test_probe_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "probe", "--count", "3")
    assert code == 0
    assert "source:      system" in out
    assert "draws:       3 x 20480 bytes" in out
    assert "p50" in out
    assert "p99" in out
    assert "MB/s" in out


HEALTHY_PLUGIN = """
from qr_sampler import EntropySource, hookimpl


class Gauged(EntropySource):
    name = "gauged"

    def get_random_bytes(self, n):
        return bytes(n)

    def health_check(self):
        return {
            "source": "gauged",
            "healthy": True,
            "last_latency_ms": 0.123456789012345,
            "breaker": {"state": "closed", "failures": 0, "opened_s": None},
            "addresses": ["127.0.0.1:1", "127.0.0.1:2"],
        }


@hookimpl
def register_entropy_sources(register):
    register("gauged", Gauged)
"""


def test_probe_prints_health_as_a_table_and_json_keeps_the_values(
    capsys: pytest.CaptureFixture[str],
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    select_plugin(install_plugin, monkeypatch, "gauged", code=HEALTHY_PLUGIN)
    code, out, _ = run_cli(capsys, "probe", "--count", "2")
    assert code == 0
    health = out[out.index("health:\n") :].splitlines()[1:]
    assert [line.split(None, 1) for line in health] == [
        ["FIELD", "VALUE"],
        ["source", "gauged"],
        ["healthy", "true"],
        ["last_latency_ms", "0.1235"],
        ["breaker.state", "closed"],
        ["breaker.failures", "0"],
        ["breaker.opened_s", "-"],
        ["addresses", "127.0.0.1:1, 127.0.0.1:2"],
    ]
    assert "{" not in out
    code, report = run_json(capsys, "probe", "--count", "2", "--json")
    assert report["health"]["last_latency_ms"] == 0.123456789012345


def test_probe_of_an_unavailable_plugin_source_fails_with_exit_2(
    capsys: pytest.CaptureFixture[str],
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    select_plugin(install_plugin, monkeypatch, "down", "unavailable")
    code, out, err = run_cli(capsys, "probe", "--json")
    assert code == 2
    assert out == ""
    assert "entropy source 'down' failed" in err
    assert "connection refused" in err


def test_probe_catches_a_source_that_replies_short(
    capsys: pytest.CaptureFixture[str],
    install_plugin: InstallPlugin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    select_plugin(install_plugin, monkeypatch, "short", code=SHORT_REPLY_PLUGIN)
    code, _, err = run_cli(capsys, "probe", "--bytes", "100")
    assert code == 2
    assert "entropy source 'short' failed: returned 50 bytes where 100 were asked for" in err


def test_probe_of_an_uninstalled_source_is_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "quantum_grpc")
    code, _, err = run_cli(capsys, "probe")
    assert code == 2
    assert "not an installed entropy source" in err


@pytest.mark.parametrize("argv", [["--count", "0"], ["--bytes", "-5"], ["--bytes", "many"]])
def test_probe_refuses_non_positive_sizes(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["probe", *argv])
    assert caught.value.code == 2
    assert argv[0] in capsys.readouterr().err


# --- help -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ([], ["sources", "config", "probe"]),
        (["sources"], ["--json"]),
        (["config"], ["--env-file", "--json"]),
        (["probe"], ["--bytes", "--count", "--json"]),
    ],
)
def test_help_lists_every_flag(
    capsys: pytest.CaptureFixture[str], command: list[str], flags: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: qr-sampler")
    for flag in flags:
        assert flag in out


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


# --- the installed console script -----------------------------------------------------


def test_console_script_as_a_real_process(install_plugin: InstallPlugin, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "qr-sampler"
    assert script.is_file(), f"console script missing next to {sys.executable}"
    site = install_plugin("broken", "broken", distribution="qr-source-broken", version="0.3.1")
    install_plugin("vault", "secret")
    env = {name: value for name, value in os.environ.items() if not name.startswith("QR_")}
    env["PYTHONPATH"] = str(site)
    env["QR_VAULT_API_KEY"] = SECRET

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *argv],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    sources = run("sources", "--json")
    assert sources.returncode == 0, sources.stderr
    report = json.loads(sources.stdout)
    assert [s["name"] for s in report["sources"]] == ["prng", "replay", "system", "vault"]
    assert [f["plugin"] for f in report["failed_plugins"]] == ["broken"]
    assert "failed to load" in sources.stderr  # the warning reaches the terminal

    config = run("config")
    assert config.returncode == 0, config.stderr
    assert f"QR_VAULT_API_KEY=****{SECRET[-4:]}" in config.stdout
    assert SECRET not in config.stdout + config.stderr
