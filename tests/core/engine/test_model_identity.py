"""The manifest's engine entry: a local model named by its weights' hashes."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from qr_sampler.engine.model_identity import engine_facts, weight_hashes


def test_a_local_model_is_named_by_the_hashes_of_its_weights_and_config(tmp_path):
    model = tmp_path / "model"
    (model / "shards").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "shards" / "part-1.safetensors").write_bytes(b"weights" * 1000)
    (model / "README.md").write_text("not a weight")
    config = SimpleNamespace(
        model_config=SimpleNamespace(
            model=str(model), served_model_name=["tiny"], revision=None, dtype="float32"
        )
    )
    facts = engine_facts(config, "v1")
    assert facts["runner"] == "v1"
    assert facts["served_model_name"] == "tiny"
    assert facts["weights"] == {
        "config.json": hashlib.sha256(b"{}").hexdigest(),
        "shards/part-1.safetensors": hashlib.sha256(b"weights" * 1000).hexdigest(),
    }


def test_a_hub_model_is_named_by_its_revision():
    config = SimpleNamespace(
        model_config=SimpleNamespace(model="org/model", served_model_name="m", revision="abc123")
    )
    facts = engine_facts(config, "v2")
    assert (facts["model"], facts["revision"], facts["weights"]) == ("org/model", "abc123", {})
    assert facts["served_model_name"] == "m"
    assert weight_hashes("org/model") == {}
    assert engine_facts(SimpleNamespace(), "v1")["model"] is None
