"""The vLLM adapter: vLLM's two runner interfaces mapped onto one sampler step.

Only this package knows vLLM's types; everything below it is engine-agnostic.
"""
