"""``qr-sampler source new``: the generated package is complete and passes its own tests."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import pytest

from qr_sampler.cli.main import main
from qr_sampler.scaffold import SourceNames

pytest_plugins = ["pytester"]

InstallPlugin = Callable[..., Path]
CORE_VERSION = importlib.metadata.version("qr-sampler-core")
GENERATED = [
    ".gitignore",
    "README.md",
    "pyproject.toml",
    "src/qr_source_acme_qrng/__init__.py",
    "src/qr_source_acme_qrng/plugin.py",
    "src/qr_source_acme_qrng/py.typed",
    "src/qr_source_acme_qrng/settings.py",
    "src/qr_source_acme_qrng/source.py",
    "tests/test_source.py",
]


def scaffold(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["source", "new", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("acme", ("acme", "qr-source-acme", "qr_source_acme", "QR_ACME_", "Acme")),
        (
            "acme-qrng",
            (
                "acme_qrng",
                "qr-source-acme-qrng",
                "qr_source_acme_qrng",
                "QR_ACME_QRNG_",
                "AcmeQrng",
            ),
        ),
        ("q2_dev", ("q2_dev", "qr-source-q2-dev", "qr_source_q2_dev", "QR_Q2_DEV_", "Q2Dev")),
    ],
)
def test_every_name_derives_from_the_one_chosen(name: str, expected: tuple[str, ...]) -> None:
    names = SourceNames.from_name(name)
    derived = (names.name, names.distribution, names.package, names.env_prefix)
    assert (*derived, names.class_prefix) == expected
    assert names.core_version == CORE_VERSION


@pytest.mark.parametrize(
    "name", ["", "Acme", "1acme", "acme-", "-acme", "ac--me", "ac_-me", "ac me", "acme.qrng", "é"]
)
def test_invalid_names_are_refused(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, err = scaffold(capsys, "--", name)  # "--": "-acme" is not an option
    assert code == 2
    assert out == ""
    assert f"source name {name!r} is not valid" in err
    assert list(Path().iterdir()) == []


def test_creates_the_package_and_says_what_next(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = scaffold(capsys, "acme-qrng", "--dir", str(tmp_path / "new" / "parent"))
    assert (code, err) == (0, "")
    root = tmp_path / "new" / "parent" / "qr-source-acme-qrng"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == GENERATED
    assert f"created {root}" in out
    assert "QR_ENTROPY_SOURCE_TYPE=acme_qrng qr-sampler probe" in out
    for path in root.rglob("*"):
        if path.is_file():
            assert "$" not in path.read_text(encoding="utf-8"), f"unrendered template in {path}"


def test_pyproject_registers_the_source_and_needs_this_core(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tomllib = pytest.importorskip("tomllib")
    scaffold(capsys, "acme-qrng")
    pyproject = tomllib.loads(Path("qr-source-acme-qrng/pyproject.toml").read_text())
    project = pyproject["project"]
    assert project["name"] == "qr-source-acme-qrng"
    assert project["dependencies"] == [f"qr-sampler-core>={CORE_VERSION}"]
    assert project["optional-dependencies"]["test"] == [f"qr-sampler-core[testing]>={CORE_VERSION}"]
    assert project["entry-points"]["qr_sampler"] == {"acme_qrng": "qr_source_acme_qrng.plugin"}
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == ["src/qr_source_acme_qrng"]


def test_the_generated_package_passes_its_own_tests(
    capsys: pytest.CaptureFixture[str], pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    scaffold(capsys, "acme-qrng", "--dir", str(pytester.path))
    root = pytester.path / "qr-source-acme-qrng"
    # Installed the way pip installs it in editable mode: src on the path, entry point
    # in a dist-info. The integration tests do a real install.
    info = root / "src" / "qr_source_acme_qrng-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: qr-source-acme-qrng\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text("[qr_sampler]\nacme_qrng = qr_source_acme_qrng.plugin\n")
    monkeypatch.syspath_prepend(str(root / "src"))
    result = pytester.runpytest_inprocess(str(root / "tests"), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=13)


def test_an_existing_directory_is_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    Path("qr-source-acme").mkdir()
    Path("qr-source-acme/mine.txt").write_text("keep")
    code, _, err = scaffold(capsys, "acme")
    assert code == 2
    assert "qr-source-acme already exists" in err
    assert [p.name for p in Path("qr-source-acme").iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("name", ["system", "acme"])
def test_a_name_that_is_already_registered_is_refused(
    capsys: pytest.CaptureFixture[str], install_plugin: InstallPlugin, name: str
) -> None:
    install_plugin("acme", "source", distribution="qr-source-acme", version="2.5.0")
    code, _, err = scaffold(capsys, name)
    assert code == 2
    owner = "qr-sampler-core" if name == "system" else "qr-source-acme"
    assert f"source name {name!r} is already registered by {owner}" in err
    assert not Path(f"qr-source-{name}").exists()


@pytest.mark.parametrize(
    ("argv", "flags"), [(["source"], ["new"]), (["source", "new"], ["NAME", "--dir"])]
)
def test_help_lists_every_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], flags: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*argv, "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for flag in flags:
        assert flag in out


def test_an_action_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["source"])
    assert caught.value.code == 2
    assert "ACTION" in capsys.readouterr().err
