"""Imported before any vLLM sampling module: vLLM's CUDA wheel on a machine without a
GPU claims pinned memory, and modules that read that once at import (the penalties')
would then fail to copy to the device. Say no before they ask."""

from vllm.platforms import current_platform
from vllm.utils import platform_utils

type(current_platform).is_pin_memory_available = classmethod(lambda cls: False)
platform_utils.is_pin_memory_available.cache_clear()
