"""zoo: a declarative model-zoo plugin system for computer vision.

`from zoo import register` is all a plugin package needs to add architectures, heads, augmentations,
transfer strategies and datasets; `Range` and `Length` declare its parameters' bounds, and `ZooError` is
the one error a user sees. This module imports no torch.
"""

from zoo import discovery  # installs the registry's plugin loader
from zoo.errors import ZooError
from zoo.registry import PLUGIN_API_VERSION, Length, Range, register

__version__ = "0.1.0"
__all__ = ["register", "Range", "Length", "ZooError", "PLUGIN_API_VERSION", "__version__", "discovery"]
