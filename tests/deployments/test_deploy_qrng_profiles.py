"""The profiles of the http and device sources: what each selects, what a token costs,
and what their compose overrides add (a device passed in, a CA certificate mounted)."""

from __future__ import annotations

import pytest
from deploy_support import DEPLOYMENTS, render
from test_deploy_compose import command_for, passed, vllm

from qr_sampler.plugins.known_variables import read_env_file

HTTP_PROFILES = {
    "anu": "anu",
    "qrypt": "qrypt",
    "outshift": "outshift",
    "lfd": "lfd",
    "quantis-appliance": "quantis",
}
#: Which amplifier each profile uses (the READMEs say why).
AMPLIFIERS = {
    "anu": ("zscore_mean", "20480"),
    "qrypt": ("uniform_bits", "7"),
    "outshift": ("uniform_bits", "7"),
    "lfd": ("uniform_bits", "7"),
    "quantis-appliance": ("zscore_mean", "20480"),
    "truerng": ("uniform_bits", "7"),
}


@pytest.mark.parametrize(("profile", "preset"), sorted(HTTP_PROFILES.items()))
def test_each_service_profile_selects_its_preset(profile: str, preset: str) -> None:
    values = read_env_file(str(DEPLOYMENTS / profile / ".env"))
    assert (values["QR_ENTROPY_SOURCE_TYPE"], values["QR_HTTP_PRESET"]) == ("http", preset)
    assert (DEPLOYMENTS / profile / "sources.txt").read_text("utf-8").splitlines()[-1] == (
        "packages/qr-source-http"
    )


@pytest.mark.parametrize(("profile", "amplifier"), sorted(AMPLIFIERS.items()))
def test_each_readme_says_what_a_token_costs_with_the_profiles_amplifier(
    profile: str, amplifier: tuple[str, str]
) -> None:
    values = read_env_file(str(DEPLOYMENTS / profile / ".env"))
    assert (values["QR_SIGNAL_AMPLIFIER_TYPE"], values["QR_SAMPLE_COUNT"]) == amplifier
    readme = (DEPLOYMENTS / profile / "README.md").read_text("utf-8")
    assert "## What a token costs" in readme
    name, count = amplifier
    assert f"`{name}`, `QR_SAMPLE_COUNT={count}` (this profile)" in readme


def test_truerng_passes_its_serial_port_into_the_container() -> None:
    service = vllm(render(command_for("truerng")))
    (device,) = service["devices"]
    assert (device["source"], device["target"]) == ("/dev/ttyACM0", "/dev/ttyACM0")
    environment = passed(service)
    assert environment["QR_ENTROPY_SOURCE_TYPE"] == "device"
    assert environment["QR_DEVICE_MODE"] == "serial"


def test_truerng_follows_a_device_path_given_in_the_shell() -> None:
    service = vllm(render(command_for("truerng"), shell={"QR_DEVICE_PATH": "/dev/ttyUSB1"}))
    assert service["devices"][0]["source"] == "/dev/ttyUSB1"
    assert passed(service)["QR_DEVICE_PATH"] == "/dev/ttyUSB1"


def test_the_quantis_appliance_gets_its_ca_file_mounted_where_the_setting_says() -> None:
    service = vllm(render(command_for("quantis-appliance")))
    environment = passed(service)
    mounts = {volume["target"]: volume for volume in service["volumes"]}
    mount = mounts[environment["QR_HTTP_CA_FILE"]]
    assert mount["source"].endswith("deployments/quantis-appliance/ca.pem")
    assert mount["read_only"] is True
