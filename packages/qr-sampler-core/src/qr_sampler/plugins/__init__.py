"""The plugin system: hook specifications and the registry of what plugins provide.

Built-ins (``qr_sampler.builtins``) are loaded by name like any other plugin, so
nothing here depends on the components they register.
"""

from qr_sampler.plugins.hookspecs import hookimpl
from qr_sampler.plugins.registry import Component, Registry, get_registry, load_registry

__all__ = ["Component", "Registry", "get_registry", "hookimpl", "load_registry"]
