"""``qr-sampler profile``: list, new and check, on profiles written by the tests.

Sources come from real installed plugins (the ``install_plugin`` fixture); the shipped
profiles, which need qr-source-grpc, are checked in tests/deployments.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from qr_sampler.cli.main import main
from qr_sampler.plugins.known_variables import known_variables, secret_variables
from qr_sampler.plugins.registry import get_registry
from qr_sampler.profiles.catalog import Profile, provided_sources
from qr_sampler.profiles.check import git_exposure
from qr_sampler.settings.config import QRSamplerConfig

InstallPlugin = Callable[..., Path]
REAL_KEY = "sk-live-7f3a9c0e2b4d6f81xyzw"

VAULT_PACKAGE = """\
[project]
name = "qr-source-vault"
version = "0.1.0"

[project.entry-points.qr_sampler]
vault = "qr_source_vault.plugin"
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with deployments/_template and a source package folder."""
    root = tmp_path / "repo"
    template = root / "deployments" / "_template"
    template.mkdir(parents=True)
    (template / ".env").write_text(
        "# annotated template\nPROFILE=_template\nQR_ENTROPY_SOURCE_TYPE=system\n# QR_TOP_K=0\n",
        encoding="utf-8",
    )
    (template / "sources.txt").write_text("# nothing: system is in core\n", encoding="utf-8")
    (template / "README.md").write_text("# PROFILE NAME\n", encoding="utf-8")
    package = root / "packages" / "qr-source-vault"
    package.mkdir(parents=True)
    (package / "pyproject.toml").write_text(VAULT_PACKAGE, encoding="utf-8")
    return root


def write_profile(repo: Path, name: str, env: str, sources: str | None = None) -> Path:
    folder = repo / "deployments" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".env").write_text(f"PROFILE={name}\n{env}", encoding="utf-8")
    if sources is not None:
        (folder / "sources.txt").write_text(sources, encoding="utf-8")
    return folder


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def check(capsys: pytest.CaptureFixture[str], repo: Path, name: str) -> tuple[int, str, str]:
    return run_cli(capsys, "profile", "check", name, "--deployments", str(repo / "deployments"))


# --- finding deployments/ ---------------------------------------------------------------


def test_help_says_where_profiles_are_found(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["profile", "--help"], ["profile", "check", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = " ".join(capsys.readouterr().out.split())
        assert "--deployments DIR" in out
        assert "$QR_DEPLOYMENTS_DIR" in out
        assert "./deployments" in out
        assert "any directory inside the repository works" in out


def test_deployments_from_option_then_variable_then_working_directory(
    capsys: pytest.CaptureFixture[str], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profile(repo, "lab", "")
    code, out, _ = run_cli(capsys, "profile", "list", "--deployments", str(repo / "deployments"))
    assert (code, out.splitlines()[1].split()[0]) == (0, "lab")

    monkeypatch.setenv("QR_DEPLOYMENTS_DIR", str(repo / "deployments"))
    code, out, _ = run_cli(capsys, "profile", "list")
    assert (code, out.splitlines()[1].split()[0]) == (0, "lab")

    monkeypatch.delenv("QR_DEPLOYMENTS_DIR")
    monkeypatch.chdir(repo)
    code, out, _ = run_cli(capsys, "profile", "list")
    assert (code, out.splitlines()[1].split()[0]) == (0, "lab")


def test_missing_deployments_folder_is_exit_2_with_the_way_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "profile", "list")
    assert (code, out) == (2, "")
    assert "no deployments folder at deployments" in err
    assert "--deployments DIR" in err
    assert "QR_DEPLOYMENTS_DIR" in err


def test_deployments_variable_is_known_to_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QR_DEPLOYMENTS_DIR", str(tmp_path))
    code, _, err = run_cli(capsys, "config")
    assert (code, err) == (0, "")


# --- list -----------------------------------------------------------------------------


def test_list_shows_name_sources_and_entropy_source(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    write_profile(repo, "vault-lab", "QR_ENTROPY_SOURCE_TYPE=vault\n", "packages/qr-source-vault\n")
    write_profile(repo, "plain", "QR_TOP_K=5\n")
    (repo / "deployments" / "notes").mkdir()  # no .env: not a profile
    code, out, _ = run_cli(capsys, "profile", "list", "--deployments", str(repo / "deployments"))
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["PROFILE", "SOURCES", "ENTROPY", "SOURCE"],
        ["plain", "-", "system"],
        ["vault-lab", "packages/qr-source-vault", "vault"],
    ]


# --- new ------------------------------------------------------------------------------


def test_new_copies_the_template_and_names_the_profile(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    deployments = str(repo / "deployments")
    code, out, _ = run_cli(capsys, "profile", "new", "my-lab", "--deployments", deployments)
    assert code == 0
    assert "qr-sampler profile check my-lab" in out
    created = repo / "deployments" / "my-lab"
    assert sorted(p.name for p in created.iterdir()) == [".env", "README.md", "sources.txt"]
    env = (created / ".env").read_text("utf-8")
    assert "PROFILE=my-lab\n" in env
    assert "# annotated template\n" in env
    assert check(capsys, repo, "my-lab")[0] == 0


def test_new_never_overwrites(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    folder = write_profile(repo, "taken", "QR_TOP_K=9\n")
    code, _, err = run_cli(
        capsys, "profile", "new", "taken", "--deployments", str(repo / "deployments")
    )
    assert code == 2
    assert "already exists; not overwriting it" in err
    assert (folder / ".env").read_text("utf-8") == "PROFILE=taken\nQR_TOP_K=9\n"


@pytest.mark.parametrize("name", ["../escape", "_hidden", "a b", ""])
def test_new_refuses_names_that_are_no_folder_or_tag(
    capsys: pytest.CaptureFixture[str], repo: Path, name: str
) -> None:
    code, _, err = run_cli(
        capsys, "profile", "new", name, "--deployments", str(repo / "deployments")
    )
    assert code == 2
    assert "must start with a letter or digit" in err


def test_new_without_a_template(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    shutil.rmtree(repo / "deployments" / "_template")
    code, _, err = run_cli(
        capsys, "profile", "new", "x", "--deployments", str(repo / "deployments")
    )
    assert code == 2
    assert "no template at" in err


# --- check: names and values -------------------------------------------------------------


def test_a_good_profile_passes(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    write_profile(repo, "good", "QR_TOP_K=40\nQR_FALLBACK_MODE=error\nHF_MODEL=org/model\n")
    code, out, err = check(capsys, repo, "good")
    assert (code, out, err) == (0, "good: ok\n", "")


def test_check_takes_a_path(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    folder = write_profile(repo, "elsewhere", "")
    code, out, _ = run_cli(capsys, "profile", "check", str(folder))
    assert (code, out) == (0, "elsewhere: ok\n")


def test_an_unknown_profile_is_exit_1_as_help_says(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    code, _, err = check(capsys, repo, "nope")
    assert code == 1
    assert "no profile at" in err
    with pytest.raises(SystemExit):
        main(["profile", "check", "--help"])
    assert "Exit 1 on any error" in " ".join(capsys.readouterr().out.split())


def test_a_misspelt_profile_name_gets_a_did_you_mean(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    write_profile(repo, "firefly-1", "QR_TOP_K=3\n")
    code, _, err = check(capsys, repo, "firefly1")
    assert code == 1
    assert "did you mean 'firefly-1'?" in err


def test_a_typo_is_an_error_with_did_you_mean(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    folder = write_profile(repo, "typo", "QR_TOPK=40\n")
    code, out, err = check(capsys, repo, "typo")
    assert code == 1
    assert f"unknown variable QR_TOPK ({folder / '.env'}); did you mean QR_TOP_K?" in err
    assert out == "typo: 1 error(s)\n"


def test_a_bad_value_names_the_variable(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    write_profile(repo, "bad", "QR_TOP_P=2\n")
    code, _, err = check(capsys, repo, "bad")
    assert code == 1
    assert "error: core: QR_TOP_P: Input should be less than or equal to 1 (got '2')" in err


def test_an_unregistered_amplifier_is_an_error(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    write_profile(repo, "amp", "QR_SIGNAL_AMPLIFIER_TYPE=zscore_meen\n")
    code, _, err = check(capsys, repo, "amp")
    assert code == 1
    assert (
        "QR_SIGNAL_AMPLIFIER_TYPE='zscore_meen' is not a registered amplifier; "
        "did you mean 'zscore_mean'?" in err
    )


def test_the_shell_environment_does_not_decide(
    capsys: pytest.CaptureFixture[str], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profile(repo, "alone", "QR_TOP_K=3\n")
    monkeypatch.setenv("QR_TOP_P", "2")
    monkeypatch.setenv("QR_ENTROPY_SOURCE_TYPE", "vault")
    assert check(capsys, repo, "alone")[0] == 0


def test_a_source_setting_is_validated(
    capsys: pytest.CaptureFixture[str], repo: Path, install_plugin: InstallPlugin
) -> None:
    install_plugin("vault", "secret", distribution="qr-source-vault")
    write_profile(
        repo,
        "vault-lab",
        "QR_ENTROPY_SOURCE_TYPE=vault\nQR_VAULT_PIN=-1\n",
        "packages/qr-source-vault\n",
    )
    code, _, err = check(capsys, repo, "vault-lab")
    assert code == 1
    assert "error: vault: QR_VAULT_PIN: Input should be greater than or equal to 0" in err
    assert "-1" not in err  # a secret is never echoed


def test_profile_must_name_its_own_folder(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    folder = write_profile(repo, "copy", "")
    (folder / ".env").write_text("PROFILE=original\n", encoding="utf-8")
    code, _, err = check(capsys, repo, "copy")
    assert code == 1
    assert "PROFILE=original" in err
    assert "set PROFILE=copy" in err

    (folder / ".env").write_text("QR_TOP_K=1\n", encoding="utf-8")
    code, _, err = check(capsys, repo, "copy")
    assert code == 1
    assert "PROFILE is not set" in err


# --- check: sources.txt -----------------------------------------------------------------


def test_system_needs_no_sources(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    write_profile(repo, "sys", "QR_ENTROPY_SOURCE_TYPE=system\n")
    assert check(capsys, repo, "sys")[0] == 0


def test_a_source_missing_from_sources_txt_is_an_error(
    capsys: pytest.CaptureFixture[str], repo: Path, install_plugin: InstallPlugin
) -> None:
    install_plugin("vault", "secret", distribution="qr-source-vault")
    folder = write_profile(repo, "vault-lab", "QR_ENTROPY_SOURCE_TYPE=vault\n", "# empty\n")
    code, _, err = check(capsys, repo, "vault-lab")
    assert code == 1
    assert (
        f"QR_ENTROPY_SOURCE_TYPE=vault: no package in {folder / 'sources.txt'} provides this "
        "source, so the image would not have it; add qr-source-vault" in err
    )


def test_an_unknown_source_is_an_error_without_a_hint(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    write_profile(repo, "ghost", "QR_ENTROPY_SOURCE_TYPE=ghost\n")
    code, _, err = check(capsys, repo, "ghost")
    assert code == 1
    assert "QR_ENTROPY_SOURCE_TYPE=ghost: no package in" in err
    assert "; add" not in err


def test_a_repository_path_provides_its_entry_points_without_installing(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    write_profile(
        repo, "vault-lab", "QR_ENTROPY_SOURCE_TYPE=vault\n", "packages/qr-source-vault  # ours\n"
    )
    assert check(capsys, repo, "vault-lab")[0] == 0


@pytest.mark.parametrize("line", ["qr-source-vault>=0.1", "qr_source_vault", "Qr.Source.Vault"])
def test_a_distribution_name_provides_what_its_installed_copy_registers(
    capsys: pytest.CaptureFixture[str], repo: Path, install_plugin: InstallPlugin, line: str
) -> None:
    install_plugin("vault", "secret", distribution="qr-source-vault")
    write_profile(repo, "vault-lab", "QR_ENTROPY_SOURCE_TYPE=vault\n", f"{line}\n")
    assert check(capsys, repo, "vault-lab")[0] == 0


def test_a_missing_package_folder_is_an_error(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    write_profile(repo, "gone", "", "--no-cache-dir\npackages/qr-source-valt\n")
    code, _, err = check(capsys, repo, "gone")
    assert code == 1
    assert "packages/qr-source-valt: no package (pyproject.toml) at" in err


def test_provided_sources_ignores_an_unknown_distribution(repo: Path) -> None:
    assert provided_sources("https://example.invalid/x.whl", repo, get_registry()) == set()


def test_requirements_skip_comments_and_pip_options(repo: Path) -> None:
    folder = write_profile(
        repo, "opts", "", "# c\n\n--index-url https://example.invalid\npkg-a==1.0 # pin\npkg-b\n"
    )
    assert Profile(folder).requirements() == ["pkg-a==1.0", "pkg-b"]


# --- check: secrets ---------------------------------------------------------------------


@pytest.fixture
def git_repo(repo: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def test_a_real_key_in_a_tracked_file_is_a_warning(
    capsys: pytest.CaptureFixture[str], git_repo: Path, install_plugin: InstallPlugin
) -> None:
    install_plugin("vault", "secret", distribution="qr-source-vault")
    folder = write_profile(
        git_repo,
        "vault-lab",
        f"QR_ENTROPY_SOURCE_TYPE=vault\nQR_VAULT_API_KEY={REAL_KEY}\n",
        "packages/qr-source-vault\n",
    )
    subprocess.run(["git", "-C", str(git_repo), "add", "."], check=True)
    code, out, err = check(capsys, git_repo, "vault-lab")
    assert code == 0
    assert out == "vault-lab: ok, 1 warning(s)\n"
    assert f"warning: QR_VAULT_API_KEY in {folder / '.env'} looks like a real key" in err
    assert "is tracked by git" in err
    assert REAL_KEY not in err


def test_a_real_key_in_a_file_git_would_add_is_a_warning(
    capsys: pytest.CaptureFixture[str], git_repo: Path, install_plugin: InstallPlugin
) -> None:
    install_plugin("vault", "secret", distribution="qr-source-vault")
    write_profile(git_repo, "vault-lab", f"QR_VAULT_API_KEY={REAL_KEY}\n")
    _, _, err = check(capsys, git_repo, "vault-lab")
    assert "is not ignored by git" in err


def test_a_key_in_an_ignored_profile_is_fine(
    capsys: pytest.CaptureFixture[str], git_repo: Path, install_plugin: InstallPlugin
) -> None:
    install_plugin("vault", "secret", distribution="qr-source-vault")
    write_profile(git_repo, "private", f"QR_VAULT_API_KEY={REAL_KEY}\n")
    (git_repo / "deployments" / ".gitignore").write_text("private/\n", encoding="utf-8")
    assert check(capsys, git_repo, "private") == (0, "private: ok\n", "")


def test_an_empty_key_is_fine(
    capsys: pytest.CaptureFixture[str], git_repo: Path, install_plugin: InstallPlugin
) -> None:
    install_plugin("vault", "secret", distribution="qr-source-vault")
    write_profile(git_repo, "vault-lab", "QR_VAULT_API_KEY=\n")
    subprocess.run(["git", "-C", str(git_repo), "add", "."], check=True)
    assert check(capsys, git_repo, "vault-lab") == (0, "vault-lab: ok\n", "")


@pytest.mark.parametrize("placeholder", ["<your-api-key>", "...", "xxxxxxxx", "CHANGEME"])
def test_a_placeholder_key_passes_with_a_warning_to_give_the_real_one(
    capsys: pytest.CaptureFixture[str],
    git_repo: Path,
    install_plugin: InstallPlugin,
    placeholder: str,
) -> None:
    install_plugin("vault", "secret", distribution="qr-source-vault")
    write_profile(git_repo, "vault-lab", f"QR_VAULT_API_KEY={placeholder}\n")
    subprocess.run(["git", "-C", str(git_repo), "add", "."], check=True)
    code, out, err = check(capsys, git_repo, "vault-lab")
    assert (code, out) == (0, "vault-lab: ok, 1 warning(s)\n")
    assert f"warning: QR_VAULT_API_KEY in {git_repo / 'deployments' / 'vault-lab' / '.env'}" in err
    assert f"is the placeholder {placeholder!r}: give the real key at run time" in err
    assert "looks like a real key" not in err


def test_every_problem_is_reported_at_once_by_its_variable(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    write_profile(
        repo,
        "many",
        "QR_TOPK=3\nQR_ENTROPY_SOURCE_TYPE=sytem\nQR_TEMPERATURE_STRATEGY=edtt\n"
        "QR_EDT_MIN_TEMP=1.5\nQR_EDT_MAX_TEMP=1.0\n",
    )
    code, _, err = check(capsys, repo, "many")
    assert code == 1
    assert "unknown variable QR_TOPK" in err
    assert "QR_EDT_MIN_TEMP (1.5) must not exceed QR_EDT_MAX_TEMP (1.0)" in err
    write_profile(repo, "names", "QR_ENTROPY_SOURCE_TYPE=sytem\nQR_TEMPERATURE_STRATEGY=edtt\n")
    code, _, err = check(capsys, repo, "names")
    assert code == 1
    assert "QR_TEMPERATURE_STRATEGY='edtt' is not a registered temperature strategy" in err
    assert "did you mean 'edt'?" in err
    assert "QR_ENTROPY_SOURCE_TYPE=sytem: no package" in err
    assert "did you mean 'system'?" in err


def test_outside_git_nothing_is_published(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("", encoding="utf-8")
    assert git_exposure(env_file) is None


def test_without_git_installed_nothing_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert git_exposure(tmp_path / ".env") is None


# --- the helpers the Docker build and compose rely on -----------------------------------


def test_secret_variables_are_those_sources_mark_secret(install_plugin: InstallPlugin) -> None:
    install_plugin("vault", "secret")
    registry = get_registry()
    assert secret_variables(registry) == {"QR_VAULT_API_KEY", "QR_VAULT_PIN"}
    assert secret_variables(registry) <= known_variables(registry).keys()


def test_from_assignments_reads_neither_environment_nor_dotenv(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QR_TOP_K", "7")
    Path(".env").write_text("QR_TOP_P=0.5\n", encoding="utf-8")
    config = QRSamplerConfig.from_assignments({"QR_FIXED_TEMPERATURE": "0.2", "OTHER": "x"})
    assert (config.top_k, config.top_p, config.fixed_temperature) == (0, 1.0, 0.2)


# A source installed here whose settings share their last words with another source's.
MYSOURCE_PLUGIN = """
from pydantic_settings import SettingsConfigDict

from qr_sampler import EntropySource, QRSettings, hookimpl


class MySourceSettings(QRSettings):
    model_config = SettingsConfigDict(env_prefix="QR_MYSOURCE_")
    secret_fields = frozenset({"api_key"})

    api_key: str = ""
    server_address: str = "127.0.0.1:1"


class MySource(EntropySource):
    name = "mysource"

    def get_random_bytes(self, n):
        return bytes(n)


@hookimpl
def register_entropy_sources(register):
    register("mysource", MySource, settings=(MySourceSettings,))
"""


def test_a_profile_needing_an_uninstalled_package_says_so_first_and_once(
    capsys: pytest.CaptureFixture[str], repo: Path, install_plugin: InstallPlugin
) -> None:
    # qr-source-vault exists in the repository but is not installed in this environment;
    # another source, installed, has names like the vault's (QR_MYSOURCE_API_KEY).
    install_plugin("mysource", code=MYSOURCE_PLUGIN)
    write_profile(
        repo,
        "vaulted",
        "QR_ENTROPY_SOURCE_TYPE=vault\nQR_VAULT_ADDRESS=10.1.2.3:9\nQR_VAULT_API_KEY=\nQR_TOPK=3\n",
        "packages/qr-source-vault\n",
    )
    code, out, err = check(capsys, repo, "vaulted")
    errors = err.splitlines()
    assert code == 1
    assert errors[0] == (
        "error: profile vaulted needs packages/qr-source-vault "
        f"({repo / 'deployments' / 'vaulted' / 'sources.txt'}), not installed here: "
        f"pip install {os.path.relpath(repo / 'packages' / 'qr-source-vault')}, then check "
        "again; until then its settings here (QR_VAULT_ADDRESS, QR_VAULT_API_KEY) cannot be "
        "checked"
    )
    assert sum("not installed" in line for line in errors) == 1
    assert "MYSOURCE" not in err
    # A typo of a known name is still one, after the package line.
    env_file = repo / "deployments" / "vaulted" / ".env"
    assert errors[1] == f"error: unknown variable QR_TOPK ({env_file}); did you mean QR_TOP_K?"
    assert out == "vaulted: 2 error(s)\n"


def test_a_misspelt_source_word_still_gets_a_did_you_mean(
    capsys: pytest.CaptureFixture[str], repo: Path, install_plugin: InstallPlugin
) -> None:
    install_plugin("mysource", code=MYSOURCE_PLUGIN)
    write_profile(repo, "typo", "QR_MYSORCE_API_KEY=\n")
    code, _, err = check(capsys, repo, "typo")
    assert code == 1
    assert "unknown variable QR_MYSORCE_API_KEY" in err
    assert err.rstrip().endswith("did you mean QR_MYSOURCE_API_KEY?")


def test_a_profile_is_found_from_any_folder_inside_the_repository(
    capsys: pytest.CaptureFixture[str], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_profile(repo, "lab", "")
    (repo / ".git").mkdir()
    monkeypatch.chdir(repo / "packages" / "qr-source-vault")
    code, out, _ = run_cli(capsys, "profile", "check", "lab")
    assert (code, out) == (0, "lab: ok\n")
    code, out, _ = run_cli(capsys, "profile", "list")
    assert (code, out.splitlines()[1].split()[0]) == (0, "lab")


def test_outside_a_repository_only_the_working_directory_counts(
    capsys: pytest.CaptureFixture[str], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No .git: a deployments folder above the working directory may belong to anything.
    write_profile(repo, "lab", "")
    monkeypatch.chdir(repo / "packages")
    code, _, err = run_cli(capsys, "profile", "list")
    assert code == 2
    assert "no deployments folder at deployments" in err
    assert "run from inside the repository" in err
