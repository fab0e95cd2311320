"""The plugin system: parameter-checked registries, discovery through entry points, the declarations cache.

Importing this wing installs discovery's loader in the registry, so the first question about plugins imports
the plugin packages. torch-free.
"""

from zoo.plugin import discovery  # installs the registry's plugin loader

__all__ = ["discovery"]
