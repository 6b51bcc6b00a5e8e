"""The module vLLM's ``vllm.logits_processors`` entry point names.

The entry point ``qr_sampler = "qr_sampler.vllm:QRSamplerLogitsProcessor"`` is a
contract (users pass the path to ``--logits-processors`` too); the class lives in
``qr_sampler.engine``.
"""

from qr_sampler.engine.processor import QRSamplerLogitsProcessor

__all__ = ["QRSamplerLogitsProcessor"]
