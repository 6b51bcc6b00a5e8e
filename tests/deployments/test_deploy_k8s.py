"""deployments/k8s: every overlay renders with ``kubectl kustomize``, validates against the
Kubernetes schemas offline, and keeps keys in Secrets only (never a ConfigMap, never the
image build context). Needs kubectl (it renders offline, no cluster)."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_support import DEPLOYMENTS, REPO

from qr_sampler.cli.main import main as qr_sampler

K8S = DEPLOYMENTS / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir())
#: Stands for a real key in the tests; never committed anywhere.
TEST_KEY = "k8s-test-key-5c1e9a77d2"


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """deployments/k8s with each overlay's secrets.env made from its example, as a user
    does before rendering."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    for example in copy.glob("overlays/*/secrets.env.example"):
        text = example.read_text().replace("<your-api-key>", TEST_KEY)
        example.with_name("secrets.env").write_text(text)
    return copy


def render(overlay: Path) -> list[dict[str, Any]]:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def test_the_shipped_overlays_are_the_profiles_that_need_one() -> None:
    assert OVERLAYS == ["firefly-1", "urandom"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_overlay_renders_and_validates_against_the_schemas(k8s_copy: Path, name: str) -> None:
    documents = render(k8s_copy / "overlays" / name)
    version = kubernetes_validate.latest_version()
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)
    kinds = {(doc["kind"], doc["metadata"]["name"].split("-")[0]) for doc in documents}
    assert ("Deployment", "vllm") in kinds
    (vllm,) = [
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "vllm"
    ]
    container = vllm["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"qr-sampler-vllm:{name}"  # the image compose builds
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    # The generated ConfigMap (and Secret) are the ones the pods read, hash suffix included.
    names = {doc["kind"]: doc["metadata"]["name"] for doc in documents}
    sources = {key: entry[key]["name"] for entry in container["envFrom"] for key in entry}
    assert sources["configMapRef"] == names["ConfigMap"]
    assert sources["secretRef"] == names.get("Secret", "qr-sampler-secrets")


def test_the_entropy_servers_are_balanced_by_the_client_and_probed_by_grpc(
    k8s_copy: Path,
) -> None:
    documents = render(k8s_copy / "overlays" / "urandom")
    (service,) = [
        d for d in documents if d["kind"] == "Service" and "entropy" in d["metadata"]["name"]
    ]
    assert service["spec"]["clusterIP"] == "None"  # DNS lists every pod
    (server,) = [
        d
        for d in documents
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "entropy-server"
    ]
    assert server["spec"]["replicas"] >= 2
    container = server["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["grpc"]["port"] == 50051
    assert container["livenessProbe"]["grpc"]["port"] == 50051
    (settings,) = [d for d in documents if d["kind"] == "ConfigMap"]
    assert settings["data"]["QR_GRPC_SERVER_ADDRESS"] == "dns:///entropy-server:50051"


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_secret_value_is_in_a_configmap(k8s_copy: Path, name: str) -> None:
    documents = render(k8s_copy / "overlays" / name)
    for document in documents:
        if document["kind"] != "Secret":
            assert TEST_KEY not in yaml.safe_dump(document)
    secrets = [d for d in documents if d["kind"] == "Secret"]
    if name == "firefly-1":
        (secret,) = secrets
        assert "QR_GRPC_API_KEY" in secret["data"]


def excluded_from_build_context(path: str) -> bool:
    """Docker's rule: the last .dockerignore pattern that matches the path (or a folder
    above it) decides."""
    excluded = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            excluded = not keep
    return excluded


def test_the_overlays_secret_files_stay_out_of_git_and_the_image_build_context() -> None:
    for name in OVERLAYS:
        secrets = f"deployments/k8s/overlays/{name}/secrets.env"
        assert excluded_from_build_context(secrets)
        ignored = subprocess.run(
            ["git", "-C", str(REPO), "check-ignore", "--quiet", secrets], check=False
        )
        assert ignored.returncode == 0
        assert not (REPO / secrets).exists() or "<your-api-key>" in (REPO / secrets).read_text()
    assert not excluded_from_build_context("deployments/firefly-1/.env")


@pytest.mark.parametrize("name", OVERLAYS)
def test_profile_check_checks_the_overlay_too(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert qr_sampler(["profile", "check", name, "--deployments", str(DEPLOYMENTS)]) == 0
    capsys.readouterr()


def test_profile_check_refuses_a_key_in_an_overlays_configmap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployments = tmp_path / "deployments"
    shutil.copytree(DEPLOYMENTS, deployments)
    settings = deployments / "k8s" / "overlays" / "firefly-1" / "settings.env"
    settings.write_text(f"QR_GRPC_API_KEY={TEST_KEY}\nQR_GRPC_SERVER_ADRESS=x:1\n")
    assert qr_sampler(["profile", "check", "firefly-1", "--deployments", str(deployments)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "QR_GRPC_API_KEY" in text
    assert "ConfigMaps" in text
    assert "did you mean QR_GRPC_SERVER_ADDRESS" in text
    assert TEST_KEY not in text
