"""A request's own sampling parameters, read from vLLM's ``SamplingParams``.

vLLM has resolved them by the time a processor sees them: the OpenAI server has
filled what the client left out from the model's generation config. Under
``QR_SAMPLING_POLICY=request`` they become the request's options, so the token is
drawn from the distribution vLLM's own sampler would draw from.
"""

from __future__ import annotations

from typing import Any

from qr_sampler.errors import ConfigValidationError

#: ``SamplingParams`` attribute -> the option it sets.
STANDARD_PARAMETERS = {
    "temperature": "fixed_temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}

THINKING_BUDGET_UNSUPPORTED = (
    "thinking_token_budget is not supported with qr-sampler: vLLM ends the thinking "
    "after the plugin has chosen the token, so the budget would not hold. Leave it "
    'out, or send "vllm_xargs": {"qr_bypass": true} to use vLLM\'s own sampler.'
)


def standard_options(sampling_params: Any) -> dict[str, Any]:
    """The request's standard parameters by option name (those it has)."""
    found = {}
    for attribute, option in STANDARD_PARAMETERS.items():
        value = getattr(sampling_params, attribute, None)
        if value is not None:
            found[option] = value
    return found


def check_supported(sampling_params: Any, bypass: bool) -> None:
    """Refuse what the plugin cannot honour (vLLM answers HTTP 400)."""
    if not bypass and getattr(sampling_params, "thinking_token_budget", None) is not None:
        raise ConfigValidationError(THINKING_BUDGET_UNSUPPORTED)
