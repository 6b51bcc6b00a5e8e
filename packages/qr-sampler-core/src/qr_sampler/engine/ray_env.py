"""Makes vLLM carry the ``QR_*`` settings to its Ray workers.

vLLM starts the workers of a multi-node deployment as Ray actors and copies only the
environment variables whose names start with one of its prefixes (``VLLM_``, ``HF_``,
``NCCL_``, ...; ``vllm/ray/ray_env.py``), plus those listed in
``VLLM_RAY_EXTRA_ENV_VAR_PREFIXES_TO_COPY``. Without ``QR_`` among them every remote
worker would start the plugin on its defaults (``system`` entropy) without a word.

vLLM calls ``carry_settings_to_ray_workers`` (a ``vllm.general_plugins`` entry point)
in the API server and in each engine process before any worker starts. It

- adds ``QR_`` and every installed source's own prefix to that variable;
- moves the dotenv file's settings into the environment (a variable already set wins,
  as it does over the file), so they travel too: a remote node need not have the file.
  ``QR_ENV_FILE`` then names ``os.devnull``, which every node has;
- records in ``QR_SOURCE_PACKAGES`` which package provides each installed source, so a
  worker on a node that lacks one fails naming the package to install.
"""

from __future__ import annotations

import logging
import os

from qr_sampler.plugins.known_variables import PREFIX, read_env_file, settings_classes
from qr_sampler.plugins.registered import SOURCE_PACKAGES_VARIABLE, source_packages
from qr_sampler.plugins.registry import get_registry
from qr_sampler.settings.base import DEFAULT_ENV_FILE, ENV_FILE_VARIABLE

logger = logging.getLogger(__name__)

#: vLLM's own setting, additive to its built-in prefixes.
VLLM_PREFIXES_VARIABLE = "VLLM_RAY_EXTRA_ENV_VAR_PREFIXES_TO_COPY"


def carry_settings_to_ray_workers() -> None:
    """Prepare this process's environment so that vLLM copies qr-sampler's settings to
    Ray workers; harmless, and the same, in every process vLLM calls it in."""
    registry = get_registry()
    # A third-party source may read variables of its own prefix; QR_ covers the rest.
    prefixes = {PREFIX} | {
        settings.env_prefix_value().upper()
        for classes in settings_classes(registry).values()
        for settings in classes
        if settings.env_prefix_value() and not settings.env_prefix_value().startswith(PREFIX)
    }
    listed = [part.strip() for part in os.environ.get(VLLM_PREFIXES_VARIABLE, "").split(",")]
    wanted = [part for part in listed if part] + sorted(prefixes - set(listed))
    os.environ[VLLM_PREFIXES_VARIABLE] = ",".join(wanted)
    _settings_from_env_file(tuple(prefixes))
    # A worker's own call must not replace what the driver recorded.
    os.environ.setdefault(SOURCE_PACKAGES_VARIABLE, source_packages(registry))


def _settings_from_env_file(prefixes: tuple[str, ...]) -> None:
    path = os.environ.get(ENV_FILE_VARIABLE, DEFAULT_ENV_FILE)
    if not os.path.isfile(path):
        # A QR_ENV_FILE naming no file is left as it is: the sampler reports it.
        return
    moved = 0
    for name, value in read_env_file(path).items():
        if name.startswith(prefixes) and name not in os.environ:
            os.environ[name] = value
            moved += 1
    os.environ[ENV_FILE_VARIABLE] = os.devnull
    logger.info(
        "qr-sampler: %d setting(s) of %s moved into the environment, so vLLM copies them "
        "to Ray workers",
        moved,
        path,
    )
